//! An outsider's tests of step names and visibility: each function step's
//! node type lives in a private module of its own and is imported under
//! the step's name, so steps are defined and used here in many module
//! shapes (visibilities, paths, globs, re-exports, function bodies, std-like
//! names, attributes) and each graph is deployed and called.

#![allow(dead_code, missing_docs, unreachable_pub)]

use pipeline_core::prelude::*;

fn local<U>(node: U) -> Pipeline<U::Input, U::Output>
where
    U: Upstream + Send + 'static,
    U::Input: Send + 'static,
    U::Output: Send + 'static,
{
    node.deploy_with(DeployOptions::local()).expect("deploy")
}

// ---------------------------------------------------------------------------
// Visibilities in nested modules.

pub mod a {
    use pipeline_core::prelude::*;

    pub mod b {
        use pipeline_core::prelude::*;

        /// A public step.
        #[step]
        pub fn pub_step(x: i64) -> i64 {
            x + 1
        }

        #[step]
        pub(crate) fn crate_step(x: i64) -> i64 {
            x + 2
        }

        #[step]
        pub(super) fn super_step(x: i64) -> i64 {
            x + 3
        }

        #[step]
        fn private_step(x: i64) -> i64 {
            x + 4
        }

        #[step]
        pub(in crate::a) fn in_a_step(x: i64) -> i64 {
            x + 5
        }

        #[step]
        pub(self) fn self_step(x: i64) -> i64 {
            x + 6
        }

        /// Uses the private and `pub(self)` steps where they are defined,
        /// naming their node types too.
        pub fn use_private_here() -> i64 {
            let node: private_step<i64> = private_step(Input::new());
            let node: self_step<i64> = self_step(node);
            let p = node.deploy().expect("deploy");
            p.call(0).expect("call") + private_step::call(0) * 100 + self_step::call(0) * 1000
        }

        pub mod c {
            use pipeline_core::prelude::*;

            #[step]
            pub(in crate::a::b) fn deep(x: i64) -> i64 {
                x * 10
            }

            #[step]
            pub(super) fn c_super(x: i64) -> i64 {
                x * 100
            }

            /// A child module reaches its parent's private step.
            pub fn parent_private() -> i64 {
                let p = super::private_step(Input::new()).deploy().expect("deploy");
                p.call(1).expect("call") + super::private_step::call(1)
            }

            pub mod d {
                use super::super::*;

                /// A grandchild reaches its grandparent's private step by
                /// a glob of the grandparent.
                pub fn glob_of_grandparent() -> i64 {
                    let node: private_step<i64> = private_step(Input::new());
                    node.deploy().expect("deploy").call(2).expect("call") + private_step::call(2)
                }
            }
        }

        /// `pub(in crate::a::b)` and `pub(super)` steps of a child module,
        /// used from here, by path and by name of their node type.
        pub fn use_child_steps() -> i64 {
            let node: c::deep<i64> = c::deep(Input::new());
            let node: c::c_super<i64> = c::c_super(node);
            node.deploy().expect("deploy").call(1).expect("call")
                + c::deep::call(1)
                + c::c_super::call(1)
        }

        /// Through `use` of a child's restricted step.
        pub fn use_child_by_import() -> i64 {
            use self::c::{c_super, deep};
            let p = c_super(deep(Input::new())).deploy().expect("deploy");
            p.call(2).expect("call") + deep::call(2)
        }
    }

    /// `pub(super)` and `pub(in crate::a)` steps used from the parent.
    pub fn from_parent() -> i64 {
        let node: b::super_step<i64> = b::super_step(Input::new());
        let node: b::in_a_step<i64> = b::in_a_step(node);
        node.deploy().expect("deploy").call(0).expect("call")
            + b::super_step::call(0) * 100
            + b::in_a_step::call(0) * 1000
    }

    /// A sibling of `b` reaches `pub(in crate::a)` and `pub(crate)` steps.
    pub mod sibling {
        use pipeline_core::prelude::*;

        use super::b::in_a_step;

        pub fn in_a_from_sibling() -> i64 {
            let p = in_a_step(super::b::crate_step(Input::new()))
                .deploy()
                .expect("deploy");
            p.call(0).expect("call") + in_a_step::call(0)
        }
    }

    /// A glob of `b` from its parent: the `pub(super)` and `pub(in
    /// crate::a)` steps come with it.
    pub mod globber {
        use super::b::*;
        use pipeline_core::prelude::*;

        pub fn by_glob() -> i64 {
            // super_step is pub(super) of b: visible in a, so in a::globber.
            let node = in_a_step(super_step(crate_step(pub_step(Input::new()))));
            node.deploy().expect("deploy").call(0).expect("call")
                + pub_step::call(0)
                + crate_step::call(0)
                + super_step::call(0)
                + in_a_step::call(0)
        }
    }
}

/// A module elsewhere in the crate using `pub(crate)` through a `use`.
mod elsewhere {
    use crate::a::b::crate_step;
    use crate::a::b::pub_step;
    use pipeline_core::prelude::*;

    pub(crate) fn use_crate_step() -> i64 {
        let p = crate_step(pub_step(Input::new())).deploy().expect("deploy");
        p.call(1).expect("call") + crate_step::call(1) + pub_step::call(1)
    }
}

#[test]
fn a_pub_step_by_full_path_and_body() {
    let p = a::b::pub_step(Input::<i64>::new()).deploy().unwrap();
    assert_eq!(p.call(1).unwrap(), 2);
    assert_eq!(a::b::pub_step::call(1), 2);
    assert_eq!(crate::a::b::pub_step::call(5), 6);
}

#[test]
fn a_pub_step_by_use() {
    use crate::a::b::pub_step;
    let p = pub_step(pub_step(Input::new())).deploy().unwrap();
    assert_eq!(p.call(1).unwrap(), 3);
    assert_eq!(pub_step::call(1), 2);
}

#[test]
fn a_pub_step_by_use_rename() {
    use crate::a::b::pub_step as bump;
    let node: bump<i64> = bump(Input::new());
    let p = local(node);
    assert_eq!(p.call(1).unwrap(), 2);
    assert_eq!(bump::call(1), 2);
}

#[test]
fn a_glob_of_a_module_of_steps() {
    use crate::a::b::*;
    let p = crate_step(pub_step(Input::new())).deploy().unwrap();
    assert_eq!(p.call(0).unwrap(), 3);
    assert_eq!(pub_step::call(0) + crate_step::call(0), 3);
}

#[test]
fn private_and_self_steps_where_defined() {
    assert_eq!(a::b::use_private_here(), 10 + 400 + 6000);
}

#[test]
fn restricted_steps_of_a_child_from_its_parent() {
    assert_eq!(a::b::use_child_steps(), 1000 + 10 + 100);
    assert_eq!(a::b::use_child_by_import(), 2000 + 20);
}

#[test]
fn a_childs_reach_to_its_parents_private_step() {
    assert_eq!(a::b::c::parent_private(), 10);
    assert_eq!(a::b::c::d::glob_of_grandparent(), 12);
}

#[test]
fn pub_super_and_pub_in_steps_from_the_parent() {
    assert_eq!(a::from_parent(), 8 + 300 + 5000);
}

#[test]
fn pub_in_and_pub_crate_from_a_sibling_module() {
    assert_eq!(a::sibling::in_a_from_sibling(), 7 + 5);
}

#[test]
fn restricted_steps_by_a_glob_in_the_parent() {
    assert_eq!(a::globber::by_glob(), 11 + 1 + 2 + 3 + 5);
}

#[test]
fn a_pub_crate_step_from_another_module() {
    assert_eq!(elsewhere::use_crate_step(), 4 + 3 + 2);
}

// ---------------------------------------------------------------------------
// Private steps at the test crate's root, used from a child `mod tests`
// the way unit tests do (`use super::*`).

#[step]
fn root_private(x: i64) -> i64 {
    x * 7
}

#[step]
pub(crate) fn root_crate(x: i64) -> i64 {
    x - 1
}

mod tests_like {
    use super::*;

    #[test]
    fn a_glob_of_the_parent_brings_private_steps() {
        let node: root_private<i64> = root_private(root_crate(Input::new()));
        assert_eq!(local(node).call(3).unwrap(), 14);
        assert_eq!(root_private::call(3), 21);
    }

    #[test]
    fn super_paths_to_private_steps() {
        let p = super::root_private(Input::<i64>::new()).deploy().unwrap();
        assert_eq!(p.call(2).unwrap(), 14);
        assert_eq!(super::root_private::call(2), 14);
        assert_eq!(crate::root_crate::call(2), 1);
    }
}

// ---------------------------------------------------------------------------
// Steps inside function bodies.

#[test]
fn a_step_inside_a_test_function() {
    #[step]
    fn triple(x: i64) -> i64 {
        x * 3
    }
    let node: triple<i64> = triple(Input::new());
    let p = node.deploy().unwrap();
    assert_eq!(p.call(2).unwrap(), 6);
    assert_eq!(triple::call(2), 6);
}

#[test]
fn a_step_inside_a_function_using_a_local_const_and_type() {
    const K: i64 = 5;
    #[derive(Clone, Debug, PartialEq)]
    struct Boxed(i64);
    #[step]
    fn wrap(x: i64) -> Boxed {
        Boxed(x + K)
    }
    #[step]
    fn unwrap_it(b: Boxed) -> i64 {
        b.0
    }
    let p = unwrap_it(wrap(Input::new())).deploy().unwrap();
    assert_eq!(p.call(1).unwrap(), 6);
    assert_eq!(wrap::call(1), Boxed(6));
}

#[test]
fn the_same_step_name_in_two_function_bodies() {
    fn first() -> i64 {
        #[step]
        fn twin(x: i64) -> i64 {
            x + 1
        }
        twin(Input::new()).deploy().unwrap().call(1).unwrap()
    }
    fn second() -> i64 {
        #[step]
        fn twin(x: i64) -> i64 {
            x + 2
        }
        twin(Input::new()).deploy().unwrap().call(1).unwrap()
    }
    assert_eq!(first() + second(), 2 + 3);
}

#[test]
fn a_step_in_a_body_shadows_a_crate_step_of_that_name() {
    #[step]
    fn root_private(x: i64) -> i64 {
        -x
    }
    let p = root_private(Input::<i64>::new()).deploy().unwrap();
    assert_eq!(p.call(3).unwrap(), -3);
    assert_eq!(root_private::call(3), -3);
    assert_eq!(crate::root_private::call(3), 21);
}

#[test]
fn a_module_of_steps_inside_a_function() {
    mod inner {
        use pipeline_core::prelude::*;

        #[step]
        pub fn in_fn_mod(x: i64) -> i64 {
            x + 100
        }

        #[step]
        pub(super) fn in_fn_mod_super(x: i64) -> i64 {
            x + 200
        }
    }
    let p = inner::in_fn_mod_super(inner::in_fn_mod(Input::new()))
        .deploy()
        .unwrap();
    assert_eq!(p.call(0).unwrap(), 300);
    assert_eq!(inner::in_fn_mod::call(0), 100);
    assert_eq!(inner::in_fn_mod_super::call(0), 200);
}

#[test]
fn a_step_in_a_block_expression() {
    let p = {
        #[step]
        fn in_block(x: i64) -> i64 {
            x * 4
        }
        in_block(Input::<i64>::new()).deploy().unwrap()
    };
    assert_eq!(p.call(2).unwrap(), 8);
}

struct Holder;

impl Holder {
    fn run() -> i64 {
        #[step]
        fn in_method(x: i64) -> i64 {
            x + 9
        }
        in_method(Input::new()).deploy().unwrap().call(1).unwrap()
    }
}

#[test]
fn a_step_inside_a_method_body() {
    assert_eq!(Holder::run(), 10);
}

fn generic_wrapper<T: Default>() -> i64 {
    #[step]
    fn in_generic(x: i64) -> i64 {
        x + 11
    }
    let _ = T::default();
    in_generic(Input::new()).deploy().unwrap().call(1).unwrap()
}

#[test]
fn a_step_inside_a_generic_function() {
    assert_eq!(generic_wrapper::<u8>() + generic_wrapper::<String>(), 24);
}

// ---------------------------------------------------------------------------
// Modules with other items; names that are also module or std names.

pub mod mixed {
    use pipeline_core::prelude::*;

    #[derive(Clone, Debug, PartialEq)]
    pub struct Config {
        pub k: i64,
    }

    pub fn helper(x: i64) -> i64 {
        x * 2
    }

    pub const OFFSET: i64 = 1;

    pub trait Twice {
        fn twice(&self) -> i64;
    }

    impl Twice for i64 {
        fn twice(&self) -> i64 {
            self * 2
        }
    }

    #[step]
    pub fn mixed_step(x: i64) -> Config {
        Config {
            k: helper(x).twice() + OFFSET,
        }
    }

    #[step]
    pub fn read_config(c: Config) -> i64 {
        c.k
    }
}

#[test]
fn a_module_that_also_has_types_functions_consts_and_traits() {
    let p = mixed::read_config(mixed::mixed_step(Input::new()))
        .deploy()
        .unwrap();
    assert_eq!(p.call(1).unwrap(), 5);
    assert_eq!(mixed::mixed_step::call(1), mixed::Config { k: 5 });
}

/// A module named like a step defined elsewhere.
mod tokenize {
    pub fn split(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }
}

pub mod text {
    use pipeline_core::prelude::*;

    #[step]
    pub fn tokenize(s: String) -> Vec<String> {
        crate::tokenize::split(&s)
    }

    #[step]
    pub fn count(words: Vec<String>) -> usize {
        words.len()
    }
}

#[test]
fn a_step_named_like_a_module_elsewhere_by_path() {
    let p = text::count(text::tokenize(Input::new())).deploy().unwrap();
    assert_eq!(p.call("a b c".to_owned()).unwrap(), 3);
    assert_eq!(text::tokenize::call("x y".into()), ["x", "y"]);
    assert_eq!(tokenize::split("q"), ["q"]);
}

#[test]
fn a_step_named_like_a_module_elsewhere_by_glob() {
    // The glob's `tokenize` is shadowed in the type namespace by the
    // crate's module `tokenize` at the root, but the value (constructor)
    // comes through.
    use crate::text::*;
    let p = count(tokenize(Input::new())).deploy().unwrap();
    assert_eq!(p.call("a b".to_owned()).unwrap(), 2);
}

/// Steps named like std functions and methods.
pub mod std_like {
    use pipeline_core::prelude::*;

    #[step]
    pub fn min(xs: Vec<i64>) -> i64 {
        xs.into_iter().min().unwrap_or(0)
    }

    #[step]
    pub fn max(xs: Vec<i64>) -> i64 {
        xs.iter().copied().max().unwrap_or(0)
    }

    #[step]
    pub fn len(s: String) -> usize {
        s.len()
    }

    #[step]
    pub fn drop(x: i64) -> i64 {
        x - 1
    }

    #[step]
    pub fn identity(x: i64) -> i64 {
        x
    }

    #[step]
    pub fn call(x: i64) -> i64 {
        x + 1000
    }

    #[step]
    pub fn named(x: i64) -> i64 {
        x + 2000
    }

    #[step]
    pub fn new(x: i64) -> i64 {
        x + 3000
    }

    #[step]
    pub fn clone(x: i64) -> i64 {
        x + 4000
    }

    #[step]
    pub fn into_iter(x: i64) -> Vec<i64> {
        vec![x, x + 1]
    }

    #[step]
    pub fn vec(x: i64) -> Vec<i64> {
        vec![x]
    }

    #[step]
    pub fn from(x: i64) -> i64 {
        x
    }

    #[step]
    pub fn default(x: i64) -> i64 {
        x
    }
}

#[test]
fn steps_named_like_std_items_by_path() {
    use std_like as s;
    let p = s::drop(s::min(s::into_iter(s::identity(Input::new()))))
        .deploy()
        .unwrap();
    assert_eq!(p.call(5).unwrap(), 4);
    let p = s::max(s::vec(Input::new())).deploy().unwrap();
    assert_eq!(p.call(5).unwrap(), 5);
    let p = s::len(Input::new()).deploy().unwrap();
    assert_eq!(p.call("abc".to_owned()).unwrap(), 3);
    let p = s::default(s::from(s::clone(s::new(s::named(s::call(Input::new()))))))
        .deploy()
        .unwrap();
    assert_eq!(p.call(0).unwrap(), 10000);
    assert_eq!(s::call::call(1), 1001);
    assert_eq!(s::named::call(1), 2001);
    assert_eq!(s::clone::call(1), 4001);
}

#[test]
fn steps_named_like_std_items_imported_shadow_the_prelude() {
    use std_like::{drop, len, max, min};
    let p = drop(min([
        max(vec![Input::<Vec<i64>>::new()].pop().unwrap()),
        // A plain number node for the gather.
        max(Input::new()),
    ]))
    .deploy();
    // Two inputs in one graph are refused at deploy (README), so use one.
    assert!(p.is_err());
    let x = Input::<Vec<i64>>::new();
    let p = drop(min([max(x.clone()), max(x)])).deploy().unwrap();
    assert_eq!(p.call(vec![1, 9, 3]).unwrap(), 8);
    assert_eq!(len::call("xy".into()), 2);
    assert_eq!(drop::call(1), 0);
}

#[test]
fn a_step_named_call_and_one_named_named_with_dot_named() {
    let node = std_like::named(Input::new()).named("renamed");
    let node = std_like::call(node).named("called");
    let graph = node.graph();
    let labels: Vec<_> = graph.steps().map(|n| n.label.clone()).collect();
    assert_eq!(labels, ["renamed", "called"]);
    assert_eq!(node.deploy().unwrap().call(0).unwrap(), 3000);
}

// ---------------------------------------------------------------------------
// Attributes on steps.

pub mod attrs {
    use pipeline_core::prelude::*;

    /// Adds one; documented.
    ///
    /// ```text
    /// not a doctest
    /// ```
    #[step]
    #[allow(clippy::needless_return)]
    pub fn documented(x: i64) -> i64 {
        return x + 1;
    }

    #[allow(non_snake_case)]
    #[step]
    pub fn Loud(x: i64) -> i64 {
        x * 2
    }

    #[step]
    #[inline]
    #[must_use]
    pub fn inlined(x: i64) -> i64 {
        x * 3
    }

    #[step]
    #[doc(hidden)]
    pub fn hidden(x: i64) -> i64 {
        x * 5
    }

    #[cfg(test)]
    #[step]
    pub fn only_in_tests(x: i64) -> i64 {
        x + 10
    }

    #[cfg(not(test))]
    #[step]
    pub fn only_in_tests(x: i64) -> i64 {
        x - 10
    }

    #[cfg(any())]
    #[step]
    pub fn never(x: i64) -> i64 {
        x
    }

    #[cfg_attr(test, allow(unused_mut))]
    #[step]
    pub fn with_cfg_attr(mut x: i64) -> i64 {
        x += 1;
        x
    }

    #[step]
    #[cfg_attr(test, allow(unused_mut))]
    pub fn with_cfg_attr_after(mut x: i64) -> i64 {
        x += 2;
        x
    }
}

#[test]
fn documented_allowed_inline_hidden_steps() {
    use attrs::*;
    let p = hidden(inlined(Loud(documented(Input::new()))))
        .deploy()
        .unwrap();
    assert_eq!(p.call(0).unwrap(), 30);
    assert_eq!(documented::call(0) + Loud::call(1) + inlined::call(1), 6);
}

#[test]
fn cfg_gated_steps_before_the_attribute() {
    let p = attrs::only_in_tests(Input::new()).deploy().unwrap();
    assert_eq!(p.call(0).unwrap(), 10);
    let p = attrs::with_cfg_attr_after(attrs::with_cfg_attr(Input::new()))
        .deploy()
        .unwrap();
    assert_eq!(p.call(0).unwrap(), 3);
}

// ---------------------------------------------------------------------------
// Step kinds: async, Result, several inputs, recursion, a parameter named
// like the step.

pub mod kinds {
    use pipeline_core::prelude::*;

    #[derive(Debug, Clone, PartialEq)]
    pub struct BadNumber(pub String);

    impl std::fmt::Display for BadNumber {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "bad number {}", self.0)
        }
    }

    impl std::error::Error for BadNumber {}

    #[step]
    pub async fn slow_double(x: i64) -> i64 {
        tokio::task::yield_now().await;
        x * 2
    }

    #[step]
    pub fn parse(s: String) -> Result<i64, BadNumber> {
        s.trim().parse().map_err(|_| BadNumber(s))
    }

    #[step]
    pub async fn parse_async(s: String) -> Result<i64, BadNumber> {
        s.parse().map_err(|_| BadNumber(s))
    }

    #[step]
    pub fn add2(a: i64, b: i64) -> i64 {
        a + b
    }

    #[step]
    pub fn mix3(a: i64, b: String, c: bool) -> String {
        format!("{a}{b}{c}")
    }

    #[step]
    pub fn fact(n: u64) -> u64 {
        if n == 0 {
            1
        } else {
            n * fact(n - 1)
        }
    }

    #[step]
    pub fn fib(n: u64) -> u64 {
        if n < 2 {
            n
        } else {
            fib(n - 1) + fib(n - 2)
        }
    }

    /// Recursion through the explicit body path and a closure.
    #[step]
    pub fn sum_to(n: u64) -> u64 {
        let rec = |k: u64| sum_to(k);
        if n == 0 {
            0
        } else {
            n + if n % 2 == 0 {
                sum_to::call(n - 1)
            } else {
                rec(n - 1)
            }
        }
    }

    #[step]
    pub async fn async_fact(n: u64) -> u64 {
        if n == 0 {
            1
        } else {
            n * Box::pin(async_fact(n - 1)).await
        }
    }

    /// A parameter named like the step.
    #[step]
    pub fn scale(scale: i64) -> i64 {
        scale * 3
    }

    /// Mutually recursive steps: each names the other's body.
    #[step]
    pub fn is_even(n: u64) -> bool {
        n == 0 || is_odd::call(n - 1)
    }

    #[step]
    pub fn is_odd(n: u64) -> bool {
        n != 0 && is_even::call(n - 1)
    }
}

#[test]
fn an_async_step_in_a_module() {
    let p = kinds::slow_double(Input::new()).deploy().unwrap();
    assert_eq!(p.call(4).unwrap(), 8);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(kinds::slow_double::call(4)), 8);
}

#[test]
fn result_steps_in_a_module() {
    let p = kinds::slow_double(kinds::parse(Input::new()))
        .deploy()
        .unwrap();
    assert_eq!(p.call(" 21 ".into()).unwrap(), 42);
    let err = p.call("x".into()).unwrap_err();
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(cause.as_deref(), Some("bad number x"), "{err}");
    assert_eq!(kinds::parse::call("7".into()), Ok(7));
    let p = kinds::parse_async(Input::new()).deploy().unwrap();
    assert_eq!(p.call("5".into()).unwrap(), 5);
}

#[test]
fn steps_with_two_and_three_inputs() {
    let x = Input::<i64>::new().shared();
    let sum = kinds::add2(x.clone(), kinds::slow_double(x.clone()));
    let p = kinds::mix3(sum, mixed_text(x.clone()), positive(x))
        .deploy()
        .unwrap();
    assert_eq!(p.call(2).unwrap(), "6n2true");
    assert_eq!(kinds::add2::call(1, 2), 3);
    assert_eq!(kinds::mix3::call(1, "a".into(), false), "1afalse");
}

// Helpers for the three-input test, used through a root re-export.
pub mod kinds_helpers {
    use pipeline_core::prelude::*;

    #[step]
    pub fn mixed_text(x: i64) -> String {
        format!("n{x}")
    }

    #[step]
    pub fn positive(x: i64) -> bool {
        x > 0
    }
}

pub use kinds_helpers::{mixed_text, positive};

#[test]
fn recursive_steps_call_their_own_body() {
    assert_eq!(kinds::fact::call(5), 120);
    assert_eq!(kinds::fib::call(10), 55);
    assert_eq!(kinds::sum_to::call(4), 10);
    let p = kinds::fib(kinds::fact(Input::new())).deploy().unwrap();
    assert_eq!(p.call(3).unwrap(), 8);
    let p = kinds::async_fact(Input::new()).deploy().unwrap();
    assert_eq!(p.call(4).unwrap(), 24);
    let p = kinds::sum_to(Input::new()).deploy().unwrap();
    assert_eq!(p.call(5).unwrap(), 15);
}

#[test]
fn a_parameter_named_like_its_step_and_mutual_recursion() {
    let p = kinds::scale(Input::new()).deploy().unwrap();
    assert_eq!(p.call(2).unwrap(), 6);
    assert_eq!(kinds::scale::call(2), 6);
    let p = kinds::is_even(Input::new()).deploy().unwrap();
    assert!(p.call(10).unwrap());
    assert!(kinds::is_odd::call(7));
}

// ---------------------------------------------------------------------------
// Graph helpers: `.named`, `.shared()`, clone, `.then`, gather, Debug.

#[test]
fn named_then_and_shared_across_modules() {
    let x = Input::<i64>::new()
        .then(a::b::pub_step)
        .then(crate::a::b::crate_step)
        .shared();
    let left = a::b::pub_step(x.clone()).named("left");
    let right = kinds::slow_double(x).named("right");
    let node = kinds::add2(left, right);
    let labels: Vec<_> = node.graph().steps().map(|n| n.label.clone()).collect();
    assert!(labels.contains(&"left".to_owned()), "{labels:?}");
    assert!(labels.contains(&"right".to_owned()), "{labels:?}");
    let p = local(node);
    // x = 0 + 1 + 2 = 3; left 4, right 6.
    assert_eq!(p.call(0).unwrap(), 10);
}

#[test]
fn a_cloned_node_of_a_nested_step_is_shared() {
    let n = a::b::pub_step(Input::<i64>::new());
    let m = n.clone();
    let p = kinds::add2(n, m).deploy().unwrap();
    assert_eq!(p.call(1).unwrap(), 4);
}

#[test]
fn then_with_a_glob_imported_and_a_renamed_step() {
    use crate::a::b::pub_step as plus_one;
    use crate::std_like::*;
    let p = Input::<i64>::new()
        .then(plus_one)
        .then(drop)
        .then(identity)
        .deploy()
        .unwrap();
    assert_eq!(p.call(7).unwrap(), 7);
}

#[test]
fn gather_a_vec_of_nested_step_nodes() {
    let x = Input::<i64>::new().shared();
    let nodes: Vec<a::b::pub_step<i64>> = (0..3).map(|_| a::b::pub_step(x.clone())).collect();
    let p = std_like::min(nodes).deploy().unwrap();
    assert_eq!(p.call(1).unwrap(), 2);
    let arr: [crate::text::tokenize<String>; 1] = [text::tokenize(Input::new())];
    let p = merge_words(arr).deploy().unwrap();
    assert_eq!(p.call("a b".into()).unwrap(), 2);
}

#[step]
fn merge_words(xs: Vec<Vec<String>>) -> usize {
    xs.iter().map(Vec::len).sum()
}

#[test]
fn debug_of_a_nested_step_node() {
    let n = a::b::pub_step(Input::<i64>::new());
    assert_eq!(format!("{n:?}"), "pub_step");
}

// ---------------------------------------------------------------------------
// Node types in users' own signatures.

fn build_impl(x: Input<i64>) -> impl Upstream<Input = i64, Output = i64> {
    a::b::pub_step(a::b::crate_step(x))
}

fn build_named(x: Input<i64>) -> a::b::pub_step<i64> {
    a::b::pub_step(x)
}

type Bumped = a::b::pub_step<i64>;

fn build_alias(x: Input<i64>) -> Bumped {
    a::b::pub_step(x)
}

struct Stored {
    node: crate::a::b::pub_step<i64>,
    more: Vec<crate::std_like::drop<i64>>,
}

trait Describe {
    fn what(&self) -> &'static str;
}

impl Describe for a::b::pub_step<i64> {
    fn what(&self) -> &'static str {
        "pub_step node"
    }
}

impl Describe for std_like::min<i64> {
    fn what(&self) -> &'static str {
        "min node"
    }
}

fn generic_over_node<N: Upstream<Input = i64, Output = i64> + Send + 'static>(n: N) -> i64 {
    local(n).call(10).unwrap()
}

#[test]
fn the_node_type_in_a_users_own_signatures() {
    assert_eq!(local(build_impl(Input::new())).call(0).unwrap(), 3);
    assert_eq!(local(build_named(Input::new())).call(0).unwrap(), 1);
    assert_eq!(local(build_alias(Input::new())).call(0).unwrap(), 1);
    let x = Input::<i64>::new().shared();
    let s = Stored {
        node: a::b::pub_step(x.clone()),
        more: vec![std_like::drop(x.clone()), std_like::drop(x)],
    };
    assert_eq!(s.node.what(), "pub_step node");
    let m = std_like::min(s.more);
    assert_eq!(m.what(), "min node");
    assert_eq!(generic_over_node(m), 9);
    assert_eq!(generic_over_node(a::b::pub_step(Input::new())), 11);
}

#[test]
fn boxed_nodes_of_steps_from_several_modules() {
    let x = Input::<i64>::new().shared();
    let nodes: Vec<pipeline_core::Node<i64, i64>> = vec![
        a::b::pub_step(x.clone()).boxed(),
        std_like::drop(x.clone()).boxed(),
        kinds::slow_double(x).boxed(),
    ];
    let p = std_like::max(nodes).deploy().unwrap();
    assert_eq!(p.call(5).unwrap(), 10);
}

// ---------------------------------------------------------------------------
// Model steps in nested modules.

pub mod models {
    pub mod inner {
        use pipeline_core::prelude::*;

        #[derive(Debug)]
        pub struct Scaler {
            k: i64,
        }

        #[step(mode = "actors")]
        impl Scaler {
            pub fn new(k: i64) -> Self {
                Scaler { k }
            }
            pub fn call(&self, x: i64) -> i64 {
                x * self.k
            }
        }

        #[derive(Debug)]
        pub(crate) struct Offset {
            by: i64,
        }

        #[step(mode = "actors", replicas = 2)]
        impl Offset {
            pub(crate) fn new(_ctx: &ReplicaContext, by: i64) -> Self {
                Offset { by }
            }
            pub(crate) fn call(&mut self, x: i64) -> Result<i64, String> {
                if x < 0 {
                    return Err("negative".into());
                }
                Ok(x + self.by)
            }
        }

        /// A function step with actors, in a nested module.
        #[step(mode = "actors", replicas = 2)]
        pub fn actor_fn(x: i64) -> i64 {
            x - 3
        }

        /// A batched function step in a nested module.
        #[step(mode = "actors", batch(max_size = 4, wait_ms = 1))]
        pub fn batched(xs: Vec<i64>) -> Vec<i64> {
            xs.into_iter().map(|x| x * 2).collect()
        }
    }

    pub use inner::Scaler;
}

#[test]
fn model_steps_in_nested_modules_used_from_elsewhere() {
    use crate::models::inner::Offset;
    let x = Input::<i64>::new();
    let node = Offset::bind(1, models::Scaler::bind(3, x));
    let node = models::inner::actor_fn(node);
    let node = models::inner::batched(node);
    let p = node.deploy().unwrap();
    assert_eq!(p.call(2).unwrap(), 8);
    assert!(p.call(-1).is_err());
    assert_eq!(models::inner::actor_fn::call(3), 0);
    assert_eq!(models::inner::batched::call(vec![1, 2]), vec![2, 4]);
}

// ---------------------------------------------------------------------------
// Re-exports.

pub mod reexports {
    mod hidden_impl {
        use pipeline_core::prelude::*;

        #[step]
        pub fn exported(x: i64) -> i64 {
            x * 11
        }

        #[step]
        pub fn exported_renamed(x: i64) -> i64 {
            x * 12
        }

        #[step]
        pub(crate) fn crate_exported(x: i64) -> i64 {
            x * 13
        }
    }

    pub(crate) use hidden_impl::crate_exported;
    pub use hidden_impl::exported;
    pub use hidden_impl::exported_renamed as twelve;

    pub mod again {
        pub use super::exported;
        pub use super::twelve as dozen;
    }

    pub mod by_glob {
        pub use super::hidden_impl::*;
    }
}

pub use reexports::exported;

#[test]
fn a_re_exported_step_and_its_re_re_exports() {
    let p = reexports::exported(Input::new()).deploy().unwrap();
    assert_eq!(p.call(1).unwrap(), 11);
    assert_eq!(reexports::exported::call(1), 11);
    assert_eq!(exported::call(2), 22);
    assert_eq!(crate::exported::call(2), 22);
    assert_eq!(reexports::again::exported::call(3), 33);
    let node: reexports::twelve<i64> = reexports::twelve(Input::new());
    assert_eq!(local(node).call(1).unwrap(), 12);
    let p = reexports::again::dozen(reexports::crate_exported(Input::new()))
        .deploy()
        .unwrap();
    assert_eq!(p.call(1).unwrap(), 156);
    assert_eq!(reexports::again::dozen::call(1), 12);
    assert_eq!(reexports::by_glob::crate_exported::call(1), 13);
    let p = reexports::by_glob::exported_renamed(Input::new())
        .deploy()
        .unwrap();
    assert_eq!(p.call(2).unwrap(), 24);
}

// ---------------------------------------------------------------------------
// Steps made by `macro_rules!`, in several modules.

macro_rules! make_step {
    ($name:ident, $k:expr) => {
        #[step]
        pub fn $name(x: i64) -> i64 {
            x + $k
        }
    };
}

macro_rules! make_fixed_step {
    () => {
        #[step]
        pub fn fixed(x: i64) -> i64 {
            x * 2
        }
    };
}

pub mod made_one {
    use pipeline_core::prelude::*;
    make_step!(plus_ten, 10);
    make_fixed_step!();
}

pub mod made_two {
    use pipeline_core::prelude::*;
    make_step!(plus_twenty, 20);
    make_fixed_step!();
}

macro_rules! make_recursive {
    ($name:ident) => {
        #[step]
        pub fn $name(n: u64) -> u64 {
            if n == 0 {
                0
            } else {
                1 + $name(n - 1)
            }
        }
    };
}

make_recursive!(count_down);

#[test]
fn macro_made_steps_in_several_modules() {
    let p = made_two::fixed(made_one::fixed(made_two::plus_twenty(made_one::plus_ten(
        Input::new(),
    ))))
    .deploy()
    .unwrap();
    assert_eq!(p.call(0).unwrap(), 120);
    assert_eq!(made_one::fixed::call(1) + made_two::fixed::call(2), 6);
    assert_eq!(count_down::call(5), 5);
    let p = count_down(Input::new()).deploy().unwrap();
    assert_eq!(p.call(3).unwrap(), 3);
}

#[test]
fn a_step_made_by_a_macro_inside_a_function() {
    make_step!(plus_five, 5);
    let p = plus_five(Input::new()).deploy().unwrap();
    assert_eq!(p.call(1).unwrap(), 6);
}

// ---------------------------------------------------------------------------
// `#[cfg]` after `#[step]` (rustc strips it before the attribute runs),
// `pub(in ..)` spellings, a local step shadowing a glob, a full-path
// attribute, a non-ASCII name.

pub mod cfg_after {
    #[pipeline_core::step]
    #[cfg(any())]
    pub fn never_after(x: i64) -> i64 {
        x
    }

    #[pipeline_core::step]
    #[cfg(test)]
    pub fn alt(x: i64) -> i64 {
        x + 1
    }

    #[pipeline_core::step]
    #[cfg(not(test))]
    pub fn alt(x: i64) -> i64 {
        x + 2
    }
}

#[test]
fn cfg_gated_steps_after_the_attribute_and_a_full_path_attribute() {
    let p = cfg_after::alt(Input::new()).deploy().unwrap();
    assert_eq!(p.call(0).unwrap(), 1);
    assert_eq!(cfg_after::alt::call(0), 1);
}

pub mod pub_in_spellings {
    pub mod inner {
        use pipeline_core::prelude::*;

        #[step]
        pub(super) fn in_super(x: i64) -> i64 {
            x + 1
        }

        #[step]
        pub(crate) fn in_crate(x: i64) -> i64 {
            x + 2
        }

        #[step]
        pub(self) fn in_self(x: i64) -> i64 {
            x + 3
        }

        pub fn use_in_self() -> i64 {
            in_self::call(0)
        }
    }

    pub fn go() -> i64 {
        use pipeline_core::prelude::*;
        let node: inner::in_super<i64> = inner::in_super(inner::in_crate(Input::new()));
        node.deploy().unwrap().call(0).unwrap() + inner::use_in_self()
    }
}

#[test]
fn pub_in_super_crate_and_self_spellings() {
    assert_eq!(pub_in_spellings::go(), 3 + 3);
    assert_eq!(pub_in_spellings::inner::in_crate::call(0), 2);
}

pub mod glob_then_local {
    use crate::a::b::*;
    use pipeline_core::prelude::*;

    /// Shadows the glob's `pub_step` in both namespaces.
    #[step]
    pub fn pub_step(x: i64) -> i64 {
        x - 100
    }

    pub fn go() -> i64 {
        let p = pub_step(crate_step(Input::new())).deploy().unwrap();
        p.call(0).unwrap() + pub_step::call(0)
    }
}

#[test]
fn a_local_step_shadows_a_glob_imported_one() {
    assert_eq!(glob_then_local::go(), -98 - 100);
}

#[test]
fn restricted_steps_in_modules_inside_a_function() {
    mod m {
        pub mod n {
            use pipeline_core::prelude::*;

            #[step]
            pub(super) fn nested(x: i64) -> i64 {
                x + 1
            }

            #[step]
            pub(crate) fn nested_crate(x: i64) -> i64 {
                x + 2
            }
        }

        pub fn go() -> i64 {
            use pipeline_core::prelude::*;
            let p = n::nested(n::nested_crate(Input::new())).deploy().unwrap();
            p.call(0).unwrap() + n::nested::call(1)
        }
    }
    assert_eq!(m::go(), 3 + 2);
    assert_eq!(m::n::nested_crate::call(1), 3);
}

pub mod unicode {
    use pipeline_core::prelude::*;

    #[step]
    pub fn größe(s: String) -> usize {
        s.chars().count()
    }

    #[step]
    pub fn _underscored(x: usize) -> usize {
        x * 2
    }
}

#[test]
fn non_ascii_and_underscored_step_names() {
    let p = unicode::_underscored(unicode::größe(Input::new()))
        .deploy()
        .unwrap();
    assert_eq!(p.call("äöü".into()).unwrap(), 6);
    assert_eq!(unicode::größe::call("ß".into()), 1);
}

trait Tag {
    fn tag(&self) -> &'static str;
}

impl<I> Tag for kinds::fact<I> {
    fn tag(&self) -> &'static str {
        "fact"
    }
}

#[test]
fn a_generic_impl_of_a_users_trait_on_a_nested_node_type() {
    let n = kinds::fact(Input::<u64>::new());
    assert_eq!(n.tag(), "fact");
    assert_eq!(local(n).call(4).unwrap(), 24);
}

// Found by this review and fixed: a raw-identifier step name panicked the
// macro ("`r#match` is not a valid identifier"), and a helper `fn` nested in
// a step's body could not call the step by name (E0434: the recursion shim
// was a `let`; it is a fn item of the body now).
mod raw_names {
    use pipeline_core::prelude::*;

    #[step]
    pub fn r#match(x: i64) -> i64 {
        x + 1
    }

    #[step]
    pub fn r#type(r#in: i64, r#loop: i64) -> i64 {
        r#in * r#loop
    }
}

#[test]
fn a_raw_identifier_step_is_named_without_its_prefix() {
    let input = Input::<i64>::new();
    let node = raw_names::r#match(input);
    assert_eq!(format!("{node:?}"), "match");
    let p = local(node);
    assert_eq!(p.call(1).unwrap(), 2);
    assert_eq!(p.metrics()[0].step, "match");
    assert_eq!(raw_names::r#type::call(3, 4), 12);
    let input = Input::<i64>::new().shared();
    let both = raw_names::r#type(input.clone(), raw_names::r#match(input));
    assert_eq!(local(both).call(3).unwrap(), 12);
}

mod nested_helpers {
    use pipeline_core::prelude::*;

    #[step]
    pub fn depth(n: u64) -> u64 {
        fn helper(n: u64) -> u64 {
            if n == 0 {
                0
            } else {
                1 + depth(n - 1)
            }
        }
        helper(n)
    }

    #[step]
    pub async fn countdown(n: u64) -> Result<u64, String> {
        async fn helper(n: u64) -> Result<u64, String> {
            if n == 0 {
                Ok(0)
            } else {
                Box::pin(countdown(n - 1)).await.map(|k| k + 1)
            }
        }
        helper(n).await
    }
}

#[test]
fn a_helper_fn_in_a_steps_body_calls_the_step_by_name() {
    assert_eq!(nested_helpers::depth::call(5), 5);
    assert_eq!(
        local(nested_helpers::depth(Input::<u64>::new()))
            .call(7)
            .unwrap(),
        7
    );
    let p = local(nested_helpers::countdown(Input::<u64>::new()));
    assert_eq!(p.call(4).unwrap(), 4);
}

// ---------------------------------------------------------------------------
// Shapes that do not compile (each would with a hand-written `fn`).
//
// The shapes below fail because the node type takes the step's name in the
// type namespace (as the struct did before the node module; not new, but a
// hand-written `fn` compiles in each):
//
// BUG (limitation?): the Rust idiom of a module re-exporting its same-named function.
//     pub mod tokenize {
//         use pipeline_core::prelude::*;
//         #[step]
//         pub fn tokenize(s: String) -> Vec<String> { .. }
//     }
//     pub use self::tokenize::tokenize;
// error[E0255]: the name `tokenize` is defined multiple times
// (likewise `use crate::text::tokenize;` in a module that has a `mod
// tokenize`, and `mod embed {..}` beside `#[step] fn embed` in one module,
// whose error points at `#[step]` with the help "`#[step] as other_embed`".)
//
// BUG (limitation?): a step named like a crate its module uses.
//     #[step]
//     pub fn serde_json(x: i64) -> String { serde_json::to_string(&x).unwrap() }
// error[E0599]: the function or associated item `to_string` exists for
// struct `serde_json<_>`, but its trait bounds were not satisfied
// (the import shadows the extern-prelude crate in the whole module; `::serde_json::` works.)
//
// BUG (limitation?): a step named like a primitive type.
//     #[step]
//     pub fn char(x: u32) -> Option<char> { std::char::from_u32(x) }
// error[E0107]: missing generics for struct `__step_char_e380133e661523d2::char`
//
// Limitation: a `pub` step whose input is a private type.
//     #[derive(Clone, Debug)] struct Secret(i64);
//     #[step] pub fn leak(s: Secret) -> i64 { s.0 }
// error[E0446]: private type `Secret` in public interface (at `#[step]`;
// from the trait impls' associated types; a plain `pub fn` only warns).
