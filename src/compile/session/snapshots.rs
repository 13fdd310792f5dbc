//! Variable snapshots: the savers that write a type's variables where they are in
//! the runner, the restore cell that reads them back into a new runner, and the
//! serde glue both compile in.

use super::unit::Unit;
use super::{BuiltCell, CompileError, Session};
use crate::compile::cell;
use std::path::PathBuf;

impl Session {
    /// Tells the session where the runner keeps variable snapshots.
    pub fn set_snapshot_dir(&mut self, dir: PathBuf) {
        self.snapshot_dir = Some(dir);
    }

    /// Whether cells record snapshots of their variables (serde is built and the
    /// runner has a place for them).
    pub fn snapshots(&self) -> bool {
        self.snapshot_dir.is_some() && self.deps.as_ref().is_some_and(|d| d.snapshots())
    }

    /// Whether the variable has a snapshot to restore it from.
    pub fn has_snapshot(&self, name: &str) -> bool {
        self.snapshot_dir
            .as_ref()
            .is_some_and(|d| d.join(name).is_file())
    }

    /// A saver: a library that snapshots the variables of one type where they are,
    /// in the runner; their names come with it when it runs. Cells themselves do not
    /// serialise (each would compile serde's code for its types, which costs more
    /// than the cell); the kernel runs savers after a cell that changed variables.
    /// A saver names no layer, only the crates of its type, so one serves the whole
    /// session, and later sessions, from the cache.
    pub async fn build_saver(&mut self, ty: &str) -> Result<Option<BuiltCell>, CompileError> {
        if !self.snapshots() {
            return Ok(None);
        }
        if let Some(built) = self.savers.get(ty) {
            return Ok(Some(built.clone()));
        }
        // The first argument says whether to wait for the snapshot, the rest name
        // the variables. The child that writes them forgets its copies rather than
        // drop them: dropping may act on the world (a temporary directory's `Drop`).
        let code = format!(
            "{{ let __fc_args = ::ferrocell::__runner::args();\n\
             let (__fc_mode, __fc_names) = __fc_args.split_first().expect(\"a saver's arguments\");\n\
             ::ferrocell::__vars::save_snapshots(__fc_names, __fc_mode == \"wait\", &mut |__fc_name: &str| {{\n\
             let __fc_v = ::ferrocell::__vars::take::<{ty}>(__fc_name);\n\
             {{ use __fc_snap::{{ViaSerde as _, NoSerde as _}}; (&__fc_snap::Save(&__fc_v)).__fc_save(__fc_name); }}\n\
             ::std::mem::forget(__fc_v);\n\
             }}); }}"
        );
        let mut parsed = cell::parse(&code).map_err(|e| CompileError::Code {
            summary: e.message.clone(),
            rendered: vec![e.message],
        })?;
        // It names no session variable; the names come at run time.
        parsed.idents.clear();
        let mut unit = Unit {
            types: vec![ty.to_string()],
            glue: true,
            ..Unit::statements(&parsed, None)
        };
        let (built, _) = self.compile(&mut unit, &code, &[]).await?;
        self.savers.insert(ty.to_string(), built.clone());
        Ok(Some(built))
    }

    /// A cell for a new runner that puts back every variable with a snapshot, by
    /// deserialising it as its known type. Its value lists the names it restored.
    /// `None` when no variable has a snapshot.
    ///
    /// `only` limits it to some variables (the ones a `%%parallel processes` body
    /// uses, for its workers); at run time its arguments may narrow that further to
    /// the ones a worker lacks.
    pub async fn build_restore(
        &mut self,
        only: Option<&[String]>,
    ) -> Result<Option<BuiltCell>, CompileError> {
        let vars: Vec<(String, String)> = self
            .vars
            .iter()
            .filter(|(n, _)| self.has_snapshot(n))
            .filter(|(n, _)| only.is_none_or(|o| o.contains(n)))
            .map(|(n, v)| (n.clone(), v.ty.clone()))
            .collect();
        if vars.is_empty() || !self.snapshots() {
            return Ok(None);
        }
        match self.compile_restore(&vars).await {
            Err(e @ CompileError::Code { .. }) if vars.len() > 1 => {
                let CompileError::Code { summary, .. } = &e else {
                    unreachable!()
                };
                // A type whose snapshot cannot be read back (one that borrows, such
                // as `&'static str`) must not cost the other variables theirs: keep
                // those that build on their own.
                tracing::info!(
                    "the restore cell did not compile ({summary}); trying each variable"
                );
                let mut good = Vec::new();
                for v in &vars {
                    if self.compile_restore(std::slice::from_ref(v)).await.is_ok() {
                        good.push(v.clone());
                    }
                }
                if good.is_empty() {
                    return Err(e);
                }
                self.compile_restore(&good).await.map(Some)
            }
            r => r.map(Some),
        }
    }

    /// Builds the cell that restores `vars` (name, type) from their snapshots.
    async fn compile_restore(
        &mut self,
        vars: &[(String, String)],
    ) -> Result<BuiltCell, CompileError> {
        let mut code = String::from(
            "{\nlet mut __fc_back: ::std::vec::Vec<&str> = ::std::vec::Vec::new();\n\
             let __fc_want = ::ferrocell::__runner::args();\n",
        );
        for (n, ty) in vars {
            code.push_str(&format!(
                "if __fc_want.is_empty() || __fc_want.iter().any(|w| w == {n:?}) {{ \
                 if let ::std::option::Option::Some(__fc_v) = {{ use __fc_snap::{{ViaDeserialize as _, NoDeserialize as _}}; \
                 (&__fc_snap::Load::<{ty}>(::std::marker::PhantomData)).__fc_load({n:?}) }} \
                 {{ ::ferrocell::__vars::put::<{ty}>({n:?}, __fc_v); __fc_back.push({n:?}); }} }}\n"
            ));
        }
        code.push_str("__fc_back\n}");
        let mut parsed = cell::parse(&code).map_err(|e| CompileError::Code {
            summary: e.message.clone(),
            rendered: vec![e.message],
        })?;
        // It puts variables in; it must take none (a type path may share a name).
        parsed.idents.clear();
        let base = self.chain.last().cloned();
        let mut unit = Unit {
            types: vars.iter().map(|(_, t)| t.clone()).collect(),
            glue: true,
            ..Unit::statements(&parsed, base.as_deref())
        };
        let (built, _) = self.compile(&mut unit, &code, &[]).await?;
        Ok(built)
    }
}

/// Snapshot helpers compiled into each cell while snapshots are on. Which `__fc_save`
/// and `__fc_load` a call resolves to depends on whether the concrete type has
/// serde's traits (autoref specialisation), so cells never fail to compile for want
/// of them.
pub(super) const SNAPSHOT_GLUE: &str = "mod __fc_snap {
pub struct Save<'a, T: ?Sized>(pub &'a T);
pub trait ViaSerde { fn __fc_save(&self, name: &str); }
impl<'a, T: ::serde::Serialize + ?Sized> ViaSerde for Save<'a, T> {
    fn __fc_save(&self, name: &str) {
        ::ferrocell::__vars::write_snapshot(name, ::std::option::Option::Some(&mut |w: &mut dyn ::std::io::Write| ::__fc_bincode::serialize_into(w, self.0).map_err(|e| e.to_string())));
    }
}
pub trait NoSerde { fn __fc_save(&self, name: &str); }
impl<'a, T: ?Sized> NoSerde for &Save<'a, T> {
    fn __fc_save(&self, name: &str) { ::ferrocell::__vars::write_snapshot(name, ::std::option::Option::None); }
}
pub struct Load<T>(pub ::std::marker::PhantomData<T>);
pub trait ViaDeserialize<T> { fn __fc_load(&self, name: &str) -> ::std::option::Option<T>; }
impl<T: ::serde::de::DeserializeOwned> ViaDeserialize<T> for Load<T> {
    fn __fc_load(&self, name: &str) -> ::std::option::Option<T> { ::__fc_bincode::deserialize_from(::ferrocell::__vars::snapshot_reader(name)?).ok() }
}
pub trait NoDeserialize<T> { fn __fc_load(&self, name: &str) -> ::std::option::Option<T>; }
impl<T> NoDeserialize<T> for &Load<T> {
    fn __fc_load(&self, _: &str) -> ::std::option::Option<T> { ::std::option::Option::None }
}
}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_glue_names_the_kernels_codec() {
        assert!(SNAPSHOT_GLUE.contains(&format!("::{}::", crate::compile::deps::SNAPSHOT_CODEC)));
    }
}
