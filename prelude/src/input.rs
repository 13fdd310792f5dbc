//! Reading a line from the person at the notebook (`input_request` on stdin).

use crate::channel::{self, tag};
use crate::json;
use std::io::Write;

#[track_caller]
fn ask(prompt: &str, password: bool) -> String {
    let _ = std::io::stdout().flush();
    let mut msg = String::from("{\"prompt\":");
    json::push_str(&mut msg, prompt);
    msg.push_str(if password {
        ",\"password\":true}"
    } else {
        ",\"password\":false}"
    });
    if !channel::send(tag::INPUT_REQUEST, msg.as_bytes()) {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        return line.trim_end_matches(['\r', '\n']).to_string();
    }
    match crate::__runner::wait_for_input() {
        Ok(value) => value,
        Err(why) => panic!("{why}"),
    }
}

/// Asks the notebook user for a line of text and returns it (without the newline).
/// Panics if the client does not accept input (`allow_stdin` is false, as in nbclient).
#[track_caller]
pub fn input(prompt: &str) -> String {
    ask(prompt, false)
}

/// Like [`input`], but the frontend hides what is typed.
#[track_caller]
pub fn password(prompt: &str) -> String {
    ask(prompt, true)
}
