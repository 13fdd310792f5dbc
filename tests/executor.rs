//! The executor driven from Rust, without sockets: a frontend inside the test
//! process sends execute requests through the same interface the shell uses,
//! reads IOPub's events from a queue, answers input requests and interrupts,
//! while the real rustc compiles each cell and a real runner process runs it.
//! (The Python suite tests the same kernel from outside, over ZeroMQ.)

use ferrocell::kernel::execute::Executor;
use ferrocell::kernel::history::History;
use ferrocell::kernel::iopub::{self, IopubEvent};
use ferrocell::kernel::stdin::{self, Ask, Origin};
use ferrocell::protocol::messages::{ExecuteReply, ExecuteRequest, ReplyStatus};
use ferrocell::protocol::Header;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// One cache for every test of the run, kept under target/ between runs: the
/// prelude and the serde build are made once.
fn cache() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("executor-cache");
    std::fs::create_dir_all(&dir).expect("the test cache");
    dir
}

/// A frontend in the test: the executor, and the other ends of its IOPub, stdin
/// and interrupt channels.
struct Frontend {
    executor: Executor,
    /// The executor's IOPub, flushed after each cell as the shell does.
    publish: iopub::Iopub,
    iopub: mpsc::UnboundedReceiver<IopubEvent>,
    asks: mpsc::UnboundedReceiver<Ask>,
    interrupts: watch::Sender<u64>,
}

/// What a cell showed: its stream text and its result's text/plain.
#[derive(Default, Debug)]
struct Shown {
    stdout: String,
    result: Option<String>,
}

impl Frontend {
    fn start() -> Frontend {
        let (iopub, events) = iopub::detached();
        let (stdin, asks) = stdin::detached();
        let (interrupts, irq) = watch::channel(0u64);
        let executor = Executor::new(cache(), History::open(None), iopub.clone(), stdin, irq);
        Frontend {
            executor,
            publish: iopub,
            iopub: events,
            asks,
            interrupts,
        }
    }

    /// Runs a cell as a client that takes input would, and collects what it showed.
    async fn run(&mut self, code: &str) -> (ExecuteReply, Shown) {
        let reply = self.executor.execute(origin(), &request(code)).await;
        let shown = self.shown().await;
        self.replied().await;
        (reply, shown)
    }

    /// What the shell does once a reply is out: snapshot what the cell changed.
    async fn replied(&mut self) {
        self.executor.save_snapshots(false).await;
    }

    /// The output published so far, taken from the queue once IOPub has it all.
    async fn shown(&mut self) -> Shown {
        self.publish.flush().await;
        let mut shown = Shown::default();
        while let Ok(ev) = self.iopub.try_recv() {
            take(&mut shown, ev);
        }
        shown
    }
}

fn take(shown: &mut Shown, ev: IopubEvent) {
    match ev {
        IopubEvent::Stream { text, .. } => shown.stdout.push_str(&text),
        IopubEvent::Publish {
            msg_type: "execute_result",
            content,
            ..
        } => shown.result = content["data"]["text/plain"].as_str().map(String::from),
        _ => {}
    }
}

fn request(code: &str) -> ExecuteRequest {
    serde_json::from_value(serde_json::json!({"code": code, "allow_stdin": true}))
        .expect("an execute request")
}

/// A request from a client that takes no input.
fn no_stdin(code: &str) -> ExecuteRequest {
    serde_json::from_value(serde_json::json!({"code": code, "allow_stdin": false}))
        .expect("an execute request")
}

fn origin() -> Origin {
    Origin {
        identities: vec![bytes::Bytes::from_static(b"test-frontend")],
        parent: Header::new("execute_request", "test-session"),
    }
}

fn ok(reply: &ExecuteReply) {
    assert_eq!(reply.status, ReplyStatus::Ok, "{:?}", reply.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_share_variables_and_items_and_show_their_values() {
    let mut fe = Frontend::start();
    let (reply, _) = fe
        .run("fn double(x: u64) -> u64 { x * 2 }\nlet base = 20u64;")
        .await;
    ok(&reply);
    let (reply, shown) = fe.run("println!(\"adding\");\ndouble(base) + 2").await;
    ok(&reply);
    assert_eq!(shown.stdout, "adding\n");
    assert_eq!(shown.result.as_deref(), Some("42"));
    // An error through `?` is the cell's error, and the variables stay.
    let (reply, _) = fe.run("let n: u32 = \"x\".parse()?;\nn").await;
    assert_eq!(reply.status, ReplyStatus::Error);
    let (reply, shown) = fe.run("base").await;
    ok(&reply);
    assert_eq!(shown.result.as_deref(), Some("20"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_requests_go_to_the_frontend_that_asked() {
    let mut fe = Frontend::start();
    let Frontend { executor, asks, .. } = &mut fe;
    let answer = async {
        let ask = asks.recv().await.expect("an input request");
        assert_eq!(ask.prompt, "name? ");
        assert_eq!(ask.identities, origin().identities);
        assert_eq!(ask.parent.session, "test-session");
        ask.answer.send("Ferris".into()).expect("the cell waits");
    };
    let code = "let name = input(\"name? \");\nformat!(\"hello {name}\")";
    let req = request(code);
    let (reply, ()) = tokio::join!(executor.execute(origin(), &req), answer);
    ok(&reply);
    assert_eq!(fe.shown().await.result.as_deref(), Some("\"hello Ferris\""));
    // A client that takes no input: the cell is told so, no question is asked.
    let reply = fe
        .executor
        .execute(origin(), &no_stdin("input(\"again? \")"))
        .await;
    assert_eq!(reply.status, ReplyStatus::Error);
    assert!(fe.asks.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_stops_a_cell_and_the_session_goes_on() {
    let mut fe = Frontend::start();
    // `:dep` alone waits for the serde build, which snapshots need.
    ok(&fe.run(":dep").await.0);
    let (reply, _) = fe.run("let kept = String::from(\"still here\");").await;
    ok(&reply);
    let Frontend {
        executor,
        iopub,
        interrupts,
        ..
    } = &mut fe;
    // A cell that never checks for interrupts: its runner is replaced after the
    // grace period, and the variable comes back from its snapshot.
    let interrupt = async {
        let mut shown = Shown::default();
        while !shown.stdout.contains("spinning") {
            take(&mut shown, iopub.recv().await.expect("output"));
        }
        interrupts.send_modify(|n| *n += 1);
    };
    let code = "println!(\"spinning\");\nloop { std::thread::sleep(std::time::Duration::from_millis(10)); }";
    let started = std::time::Instant::now();
    let req = request(code);
    let (reply, ()) = tokio::join!(executor.execute(origin(), &req), interrupt);
    assert!(started.elapsed() < Duration::from_secs(60));
    let error = reply.error.expect("an interrupted cell fails");
    assert_eq!(error.ename, "KeyboardInterrupt", "{error:?}");
    let (reply, shown) = fe.run("kept.clone()").await;
    ok(&reply);
    assert_eq!(shown.result.as_deref(), Some("\"still here\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_runner() {
    let mut fe = Frontend::start();
    let (reply, shown) = fe.run("std::process::id()").await;
    ok(&reply);
    let pid: u32 = shown.result.expect("a pid").parse().expect("a number");
    assert!(PathBuf::from(format!("/proc/{pid}")).exists());
    fe.executor.stop().await;
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        !PathBuf::from(format!("/proc/{pid}")).exists()
    });
    assert!(gone, "the runner {pid} outlived the shutdown");
}
