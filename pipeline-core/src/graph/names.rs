//! Instance names: what each step node of one graph is called in graphs,
//! metrics, errors, spans and deploy options. A node's name is its step's
//! name, or the one given with `.named(..)`; when a graph holds the name
//! twice (the same model bound to two weight files, say), the later ones
//! get `_1`, `_2`, ... as Ray Serve does, so their counters stay apart.
//! Names are given in one place, `GraphBuilder::step`, by the traversal
//! that deploys a graph (and by the one that prints it before deployment,
//! which walks the same nodes in the same order).

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

/// Names given out in one graph.
#[derive(Debug, Default)]
pub(crate) struct InstanceNames {
    taken: HashSet<&'static str>,
}

impl InstanceNames {
    /// `wanted`, or `wanted_N` with the smallest free `N` when it is taken.
    pub(crate) fn unique(&mut self, wanted: &'static str) -> &'static str {
        let name = if self.taken.contains(wanted) {
            (1..)
                .map(|n| format!("{wanted}_{n}"))
                .find(|candidate| !self.taken.contains(candidate.as_str()))
                .map_or(wanted, |free| intern(&free))
        } else {
            wanted
        };
        self.taken.insert(name);
        name
    }
}

/// A `'static` copy of `name`, made once per distinct name for the life of
/// the process (names are few: one per step instance a program writes), so
/// errors and reports can keep carrying `&'static str`.
pub(crate) fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(&known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_get_the_next_free_suffix() {
        let mut names = InstanceNames::default();
        assert_eq!(names.unique("Classifier"), "Classifier");
        assert_eq!(names.unique("Classifier_1"), "Classifier_1");
        assert_eq!(names.unique("Classifier"), "Classifier_2");
        assert_eq!(names.unique("embed"), "embed");
    }

    #[test]
    fn interning_returns_one_copy() {
        let a = intern(&String::from("resnet18"));
        let b = intern("resnet18");
        assert!(std::ptr::eq(a, b));
    }
}
