//! An outsider's pass over the `#[step]` attribute, written from the README
//! and the attribute's docs only: valid step shapes a user would write
//! (inputs and outputs of many types, names that collide with what the
//! macro might generate or use, attributes on steps and their arguments,
//! patterns, models of many kinds, `macro_rules!` fragments, hygiene
//! traps), each deployed and called, under the lints a strict user crate
//! sets. No test sleeps or reads a clock.
//!
//! The shapes found not to compile (or to warn) and fixed since are the
//! `once_refused` module's; those still refused are listed in the comment
//! at the end of the file.

// A user's crate may deny these; the macro's expansion must not trip them.
#![deny(warnings, missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(clippy::all)]
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pipeline_core::prelude::*;
use pipeline_core::StepFn;

/// Deploys with the default options (steps run in their own modes).
fn up<U>(node: U) -> Pipeline<U::Input, U::Output>
where
    U: Upstream + Send + 'static,
    U::Input: Send + 'static,
    U::Output: Send + 'static,
{
    node.deploy().expect("deploy")
}

// ---------------------------------------------------------------------------
// Inputs and outputs of many shapes.

/// Steps whose inputs and outputs are std types of many shapes.
pub mod shapes {
    use super::*;

    /// Unit in.
    #[step]
    pub fn from_unit(_: ()) -> i32 {
        5
    }

    /// Unit out, fallible.
    #[step]
    pub fn unit_or_err(x: i32) -> Result<(), String> {
        if x > 0 {
            Ok(())
        } else {
            Err(format!("not positive: {x}"))
        }
    }

    /// Tuple in (a pattern), triple out.
    #[step]
    pub fn tuple3((a, b): (i32, i32)) -> (i32, i32, i32) {
        (a, b, a + b)
    }

    /// A one-element tuple.
    #[step]
    pub fn one_tuple(x: (i32,)) -> (i32,) {
        (x.0 + 1,)
    }

    /// Arrays in and out.
    #[step]
    pub fn pairs(x: [u8; 4]) -> [u16; 2] {
        [x[0] as u16 + x[1] as u16, x[2] as u16 + x[3] as u16]
    }

    /// `Option` in and out.
    #[step]
    pub fn opt(x: Option<i32>) -> Option<String> {
        x.map(|v| v.to_string())
    }

    /// `Box<dyn Error + Send + Sync + 'static>` written out in full.
    #[step]
    pub fn box_err(s: String) -> Result<u8, Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(s.trim().parse::<u8>()?)
    }

    /// A thiserror enum error.
    #[derive(Debug, thiserror::Error)]
    pub enum MyErr {
        /// A negative number.
        #[error("negative: {0}")]
        Negative(i32),
    }

    /// Fails with `MyErr`.
    #[step]
    pub fn custom(x: i32) -> Result<i32, MyErr> {
        if x < 0 {
            Err(MyErr::Negative(x))
        } else {
            Ok(x)
        }
    }

    /// `&'static str` as the error.
    #[step]
    pub fn static_str_err(x: i32) -> Result<String, &'static str> {
        if x > 0 {
            Ok(x.to_string())
        } else {
            Err("not positive")
        }
    }

    /// `Arc<String>` in, `Arc<str>` out.
    #[step]
    pub fn arc_str(x: Arc<String>) -> Arc<str> {
        Arc::from(x.as_str())
    }

    /// Nested vectors.
    #[step]
    pub fn row_sums(x: Vec<Vec<i32>>) -> Vec<i32> {
        x.into_iter().map(|v| v.iter().sum()).collect()
    }

    /// Maps.
    #[step]
    pub fn sorted(x: HashMap<String, i32>) -> BTreeMap<String, i32> {
        x.into_iter().collect()
    }

    /// Sets.
    #[step]
    pub fn distinct(x: Vec<i32>) -> HashSet<i32> {
        x.into_iter().collect()
    }

    /// `Box<str>` in, `Box<[u8]>` out.
    #[step]
    pub fn boxed_bytes(x: Box<str>) -> Box<[u8]> {
        x.into_boxed_bytes()
    }

    /// `Cow<'static, str>` in and out.
    #[step]
    pub fn shout(x: Cow<'static, str>) -> Cow<'static, str> {
        if x.is_empty() {
            Cow::Borrowed("(empty)")
        } else {
            Cow::Owned(x.to_uppercase())
        }
    }

    /// An enum with tuple and struct variants.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Shape {
        /// A circle of this radius.
        Circle(f64),
        /// A square.
        Square {
            /// Its side.
            side: f64,
        },
    }

    /// Enum in.
    #[step]
    pub fn area(s: Shape) -> f64 {
        match s {
            Shape::Circle(r) => 3.0 * r * r,
            Shape::Square { side } => side * side,
        }
    }

    /// A type alias.
    pub type Matrix = Vec<Vec<f32>>;

    /// Alias in.
    #[step]
    pub fn trace(m: Matrix) -> f32 {
        (0..m.len()).map(|i| m[i][i]).sum()
    }

    /// Paths for std types.
    #[step]
    pub fn bytes_of(s: std::string::String) -> ::std::vec::Vec<::core::primitive::u8> {
        s.into_bytes()
    }

    /// `crate::` in, `self::` out.
    #[step]
    pub fn same_shape(s: crate::shapes::Shape) -> self::Shape {
        s
    }

    /// `super::` in and out.
    #[step]
    pub fn doubled(x: super::Top) -> super::Top {
        super::Top(x.0 * 2)
    }

    /// A `Result` as a plain input value.
    #[step]
    pub fn or_minus_one(x: Result<i32, String>) -> i32 {
        x.unwrap_or(-1)
    }

    /// A fallible step whose value is an `Option`.
    #[step]
    pub fn maybe(x: i32) -> Result<Option<i32>, String> {
        match x {
            0 => Ok(None),
            x if x > 0 => Ok(Some(x)),
            x => Err(format!("negative {x}")),
        }
    }

    /// `Option<Result<..>>` is a value, not a fallible output.
    #[step]
    pub fn opt_res(x: i32) -> Option<Result<i32, String>> {
        match x {
            0 => None,
            x if x > 0 => Some(Ok(x)),
            x => Some(Err(format!("negative {x}"))),
        }
    }

    /// A function pointer out.
    #[step]
    pub fn pick_fn(x: i32) -> fn(i32) -> i32 {
        if x > 0 {
            |v| v + 1
        } else {
            |v| v - 1
        }
    }

    /// Primitives of several kinds.
    #[step]
    pub fn prims(a: char, b: bool, c: f32, d: u128, e: i8) -> String {
        format!("{a}|{b}|{c}|{d}|{e}")
    }

    /// char to bool.
    #[step]
    pub fn is_alpha(c: char) -> bool {
        c.is_alphabetic()
    }

    /// char to f32.
    #[step]
    pub fn code_f32(c: char) -> f32 {
        c as u32 as f32
    }

    /// char to u128.
    #[step]
    pub fn code_u128(c: char) -> u128 {
        u128::from(c as u32) << 64
    }

    /// char to i8.
    #[step]
    pub fn code_i8(c: char) -> i8 {
        -((c as u8 % 10) as i8)
    }

    /// `std::time::Duration` in and out.
    #[step]
    pub fn twice_as_long(d: std::time::Duration) -> std::time::Duration {
        d * 2
    }

    /// Deeply nested generic std types, through an alias.
    pub type Nested = Vec<HashMap<String, Vec<(u8, Option<Box<str>>)>>>;

    /// Counts the `Some`s.
    #[step]
    pub fn nested(x: Nested) -> usize {
        x.iter()
            .flat_map(|m| m.values())
            .flatten()
            .filter(|(_, s)| s.is_some())
            .count()
    }
}

/// A type at the crate root, used through `super::`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Top(pub i32);

#[test]
fn unit_tuple_array_and_option_shapes() {
    use shapes::*;
    assert_eq!(up(from_unit(Input::<()>::new())).call(()).unwrap(), 5);
    let p = up(unit_or_err(Input::new()));
    p.call(1).unwrap();
    let err = p.call(-1).unwrap_err();
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "not positive: -1"
    );
    assert_eq!(up(tuple3(Input::new())).call((1, 2)).unwrap(), (1, 2, 3));
    assert_eq!(up(one_tuple(Input::new())).call((1,)).unwrap(), (2,));
    assert_eq!(up(pairs(Input::new())).call([1, 2, 3, 4]).unwrap(), [3, 7]);
    assert_eq!(
        up(opt(Input::new())).call(Some(3)).unwrap(),
        Some("3".to_string())
    );
    assert_eq!(up(opt(Input::new())).call(None).unwrap(), None);
}

#[test]
fn error_types_of_many_kinds() {
    use shapes::*;
    let p = up(box_err(Input::new()));
    assert_eq!(p.call(" 7 ".into()).unwrap(), 7);
    assert!(matches!(
        p.call("300".into()),
        Err(PipelineError::Step { .. })
    ));

    let p = up(custom(Input::new()));
    assert_eq!(p.call(2).unwrap(), 2);
    let err = p.call(-2).unwrap_err();
    let source = std::error::Error::source(&err).unwrap();
    assert!(matches!(
        source.downcast_ref::<MyErr>(),
        Some(MyErr::Negative(-2))
    ));

    let p = up(static_str_err(Input::new()));
    assert_eq!(p.call(3).unwrap(), "3");
    let err = p.call(0).unwrap_err();
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "not positive"
    );
}

#[test]
fn smart_pointer_collection_and_cow_shapes() {
    use shapes::*;
    assert_eq!(
        &*up(arc_str(Input::new()))
            .call(Arc::new("hi".into()))
            .unwrap(),
        "hi"
    );
    assert_eq!(
        up(row_sums(Input::new()))
            .call(vec![vec![1, 2], vec![3]])
            .unwrap(),
        vec![3, 3]
    );
    let m = up(sorted(Input::new()))
        .call(HashMap::from([("b".to_string(), 2), ("a".to_string(), 1)]))
        .unwrap();
    assert_eq!(
        m.into_iter().collect::<Vec<_>>(),
        vec![("a".to_string(), 1), ("b".to_string(), 2)]
    );
    assert_eq!(
        up(distinct(Input::new()))
            .call(vec![1, 1, 2])
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        &*up(boxed_bytes(Input::new())).call("ab".into()).unwrap(),
        b"ab"
    );
    let p = up(shout(Input::new()));
    assert_eq!(p.call(Cow::Borrowed("ab")).unwrap(), "AB");
    assert_eq!(p.call(Cow::Owned(String::new())).unwrap(), "(empty)");
    let nested_in = vec![HashMap::from([(
        "k".to_string(),
        vec![(1u8, Some(Box::<str>::from("x"))), (2, None)],
    )])];
    assert_eq!(up(nested(Input::new())).call(nested_in).unwrap(), 1);
}

#[test]
fn enums_aliases_and_paths() {
    use shapes::*;
    assert_eq!(
        up(area(Input::new()))
            .call(Shape::Square { side: 2.0 })
            .unwrap(),
        4.0
    );
    assert_eq!(
        up(trace(Input::new()))
            .call(vec![vec![1.0, 0.0], vec![0.0, 2.0]])
            .unwrap(),
        3.0
    );
    assert_eq!(
        up(bytes_of(Input::new())).call("a".into()).unwrap(),
        vec![b'a']
    );
    assert_eq!(
        up(same_shape(Input::new()))
            .call(Shape::Circle(1.0))
            .unwrap(),
        Shape::Circle(1.0)
    );
    assert_eq!(up(doubled(Input::new())).call(Top(2)).unwrap(), Top(4));
}

#[test]
fn results_and_options_as_values() {
    use shapes::*;
    assert_eq!(
        up(or_minus_one(Input::new()))
            .call(Err("x".into()))
            .unwrap(),
        -1
    );
    assert_eq!(up(or_minus_one(Input::new())).call(Ok(4)).unwrap(), 4);
    let p = up(maybe(Input::new()));
    assert_eq!(p.call(0).unwrap(), None);
    assert_eq!(p.call(2).unwrap(), Some(2));
    assert!(p.call(-2).is_err());
    let p = up(opt_res(Input::new()));
    assert_eq!(p.call(0).unwrap(), None);
    assert_eq!(p.call(-1).unwrap(), Some(Err("negative -1".to_string())));
    let f = up(pick_fn(Input::new())).call(1).unwrap();
    assert_eq!(f(1), 2);
}

#[test]
fn primitives_of_every_kind_and_durations() {
    use shapes::*;
    let c = Input::<char>::new().shared();
    let p = up(prims(
        c.clone(),
        is_alpha(c.clone()),
        code_f32(c.clone()),
        code_u128(c.clone()),
        code_i8(c),
    ));
    assert_eq!(
        p.call('a').unwrap(),
        format!("a|true|97|{}|-7", 97u128 << 64)
    );
    let d = std::time::Duration::from_millis(1500);
    assert_eq!(up(twice_as_long(Input::new())).call(d).unwrap(), d * 2);
}

// ---------------------------------------------------------------------------
// Names that collide with what the macro might generate or use.

/// A one-parameter `Result` alias in scope, as many crates define.
pub mod alias_result {
    use pipeline_core::prelude::*;

    /// The module's error.
    #[derive(Debug, thiserror::Error)]
    #[error("my err {0}")]
    pub struct MyErr(pub i64);

    /// `Result` with one parameter.
    pub type Result<T> = std::result::Result<T, MyErr>;

    /// Doubles non-negative numbers.
    #[step]
    pub fn checked(x: i64) -> Result<i64> {
        if x < 0 {
            Err(MyErr(x))
        } else {
            Ok(x * 2)
        }
    }

    /// A model using the alias in `new` and `call`.
    #[derive(Debug)]
    pub struct Times {
        k: i64,
    }

    #[step(mode = "actors")]
    impl Times {
        /// Refuses zero.
        pub fn new(k: i64) -> Result<Self> {
            if k == 0 {
                Err(MyErr(0))
            } else {
                Ok(Times { k })
            }
        }
        /// Multiplies.
        pub fn call(&self, x: i64) -> Result<i64> {
            Ok(x * self.k)
        }
    }
}

#[test]
fn a_one_parameter_result_alias_is_fallible() {
    use alias_result::*;
    let p = up(checked(Input::new()));
    assert_eq!(p.call(2).unwrap(), 4);
    let err = p.call(-1).unwrap_err();
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "my err -1"
    );
    assert_eq!(up(Times::bind(3, Input::new())).call(2).unwrap(), 6);
    assert!(Times::bind(0, Input::<i64>::new()).deploy().is_err());
}

/// A `Result` alias under another name: the macro cannot see through it,
/// so the step's output is the `Result` itself, as a value (as the README's
/// `-> Result<Out, E>` reads: the name is what counts).
pub mod other_alias {
    use pipeline_core::prelude::*;

    /// The module's error.
    #[derive(Debug, Clone, PartialEq, thiserror::Error)]
    #[error("negative {0}")]
    pub struct Neg(pub i64);

    /// A `Result` alias named otherwise.
    pub type Fallible<T> = Result<T, Neg>;

    /// Checks its input.
    #[step]
    pub fn check(x: i64) -> Fallible<i64> {
        if x < 0 {
            Err(Neg(x))
        } else {
            Ok(x)
        }
    }
}

#[test]
fn a_result_alias_under_another_name_is_a_value() {
    let p: Pipeline<i64, Result<i64, other_alias::Neg>> = up(other_alias::check(Input::new()));
    assert_eq!(p.call(-1).unwrap(), Err(other_alias::Neg(-1)));
    assert_eq!(p.call(1).unwrap(), Ok(1));
}

/// User types named like the framework's and the macro's likely names.
pub mod user_types {
    use pipeline_core::prelude::*;

    /// Named `Node`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Node(pub i64);
    /// Named `Output`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Output(pub i64);
    /// Named `Error`.
    #[derive(Debug, thiserror::Error)]
    #[error("user error")]
    pub struct Error;
    /// Named `In`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct In(pub i64);
    /// Named `I`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct I(pub i64);
    /// Named `T`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct T(pub i64);
    /// Named `Out`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Out(pub i64);
    /// Named `State`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct State(pub i64);
    /// Named `Upstream`.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Upstream;
    /// Named `StepFn`.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct StepFn;
    /// Named `Produces`.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Produces;
    /// Named `ReplicaContext`.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct ReplicaContext;
    /// Named `StepInfo`.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct StepInfo;

    /// `Node` to `Output`.
    #[step]
    pub fn a(n: Node) -> Output {
        Output(n.0 + 1)
    }
    /// `Output` to `In`, failing with `Error`.
    #[step]
    pub fn b(o: Output) -> Result<In, Error> {
        if o.0 < 0 {
            Err(Error)
        } else {
            Ok(In(o.0 + 1))
        }
    }
    /// `In` to `I`.
    #[step(mode = "tasks")]
    pub fn c(i: In) -> I {
        I(i.0 + 1)
    }
    /// `I` to `T`.
    #[step(mode = "actors", replicas = 2)]
    pub fn d(i: I) -> T {
        T(i.0 + 1)
    }
    /// `T` to `Out`.
    #[step]
    pub fn e(t: T) -> Out {
        Out(t.0 + 1)
    }
    /// `Out` to `State`, async.
    #[step]
    pub async fn f(o: Out) -> State {
        State(o.0 + 1)
    }
    /// Takes the marker types that shadow the framework's names.
    /// (A user type named `ReplicaContext` cannot be a direct input: see
    /// the end of the file.)
    #[step]
    pub fn markers(
        s: State,
        _u: Upstream,
        _f: StepFn,
        _p: Produces,
        r: (ReplicaContext,),
        _i: StepInfo,
    ) -> i64 {
        let _ = r.0;
        s.0
    }
    /// Makes the marker types.
    #[step]
    pub fn make_markers(_x: Node) -> (Upstream, StepFn, Produces, ReplicaContext, StepInfo) {
        (Upstream, StepFn, Produces, ReplicaContext, StepInfo)
    }
    /// Splits out one marker.
    #[step]
    pub fn upstream_of(m: (Upstream, StepFn, Produces, ReplicaContext, StepInfo)) -> Upstream {
        m.0
    }
    /// Splits out one marker.
    #[step]
    pub fn stepfn_of(m: (Upstream, StepFn, Produces, ReplicaContext, StepInfo)) -> StepFn {
        m.1
    }
    /// Splits out one marker.
    #[step]
    pub fn produces_of(m: (Upstream, StepFn, Produces, ReplicaContext, StepInfo)) -> Produces {
        m.2
    }
    /// Splits out one marker.
    #[step]
    pub fn ctx_of(m: (Upstream, StepFn, Produces, ReplicaContext, StepInfo)) -> (ReplicaContext,) {
        (m.3,)
    }
    /// Splits out one marker.
    #[step]
    pub fn info_of(m: (Upstream, StepFn, Produces, ReplicaContext, StepInfo)) -> StepInfo {
        m.4
    }

    /// A model whose `new` names the real context by path.
    #[derive(Debug)]
    pub struct Mdl {
        k: i64,
    }

    #[step(mode = "actors")]
    impl Mdl {
        /// Builds.
        pub fn new(ctx: &pipeline_core::ReplicaContext, k: i64) -> Self {
            Mdl {
                k: k + ctx.index() as i64,
            }
        }
        /// Calls.
        pub fn call(&mut self, s: State) -> Node {
            Node(s.0 + self.k)
        }
    }
}

#[test]
fn user_types_named_node_output_error_in_i_t_state() {
    use user_types::*;
    let p = up(Mdl::bind(10, f(e(d(c(b(a(Input::<Node>::new()))))))));
    assert_eq!(p.call(Node(0)).unwrap(), Node(16));
    assert!(p.call(Node(-5)).is_err());

    let x = Input::<Node>::new().shared();
    let m = make_markers(x.clone()).shared();
    let p = up(markers(
        f(e(d(c(b(a(x)))))),
        upstream_of(m.clone()),
        stepfn_of(m.clone()),
        produces_of(m.clone()),
        ctx_of(m.clone()),
        info_of(m),
    ));
    assert_eq!(p.call(Node(1)).unwrap(), 7);
}

/// Local modules shadowing crates the expansion might name.
pub mod shadow_mods {
    /// Not the crate.
    pub mod pipeline_core {}
    /// Not the crate.
    pub mod tokio {}
    /// Not the crate.
    pub mod futures {}
    /// Not the crate.
    pub mod serde {}
    /// Not the crate.
    pub mod thiserror {}
    use ::pipeline_core::prelude::*;

    /// Local.
    #[step]
    pub fn inc(x: i64) -> i64 {
        x + 1
    }
    /// Actors, async.
    #[step(mode = "actors", replicas = 2)]
    pub async fn inc2(x: i64) -> i64 {
        x + 2
    }
    /// Tasks, fallible.
    #[step(mode = "tasks")]
    pub fn inc3(x: i64) -> Result<i64, String> {
        Ok(x + 3)
    }
    /// Remote-capable.
    #[step(remote)]
    pub fn inc4(x: i64) -> i64 {
        x + 4
    }
    /// A stream.
    #[step(mode = "tasks")]
    pub fn upto(x: i64) -> ItemStream<i64> {
        ItemStream::iter(0..x)
    }
    /// A batched model.
    #[derive(Debug, Default)]
    pub struct Mm;

    #[step(mode = "actors", batch(max_size = 4, wait_ms = 1))]
    impl Mm {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext) -> Self {
            Mm
        }
        /// Adds five to each.
        pub fn call(&self, xs: Vec<i64>) -> Vec<i64> {
            xs.into_iter().map(|x| x + 5).collect()
        }
    }

    /// The graph of all of them.
    pub fn go(x: i64) -> Vec<i64> {
        let n = Mm::bind(inc4(inc3(inc2(inc(Input::<i64>::new())))));
        let p = upto(n).collect().deploy().unwrap();
        p.call(x).unwrap()
    }
}

#[test]
fn local_modules_named_like_crates_do_not_capture_paths() {
    assert_eq!(shadow_mods::go(-14), vec![0]);
    assert_eq!(shadow_mods::go(-13), vec![0, 1]);
}

/// A blanket trait whose methods share names with std's and the
/// framework's, in scope where steps are defined.
pub mod evil_traits {
    use pipeline_core::prelude::*;

    /// Every method name the expansion might call.
    pub trait Evil {
        /// Shadow.
        fn clone(&self) -> u8 {
            0
        }
        /// Shadow.
        fn call(&self) -> u8 {
            0
        }
        /// Shadow.
        fn into(self) -> u8
        where
            Self: Sized,
        {
            0
        }
        /// Shadow.
        fn deploy(&self) -> u8 {
            0
        }
        /// Shadow.
        fn bind(&self) -> u8 {
            0
        }
        /// Shadow.
        fn lock(&self) -> u8 {
            0
        }
        /// Shadow.
        fn eval(&self) -> u8 {
            0
        }
        /// Shadow.
        fn poll(&self) -> u8 {
            0
        }
        /// Shadow.
        fn map(&self) -> u8 {
            0
        }
        /// Shadow.
        fn map_err(&self) -> u8 {
            0
        }
        /// Shadow.
        fn boxed(&self) -> u8 {
            0
        }
        /// Shadow.
        fn name(&self) -> u8 {
            0
        }
        /// Shadow.
        fn build(&self) -> u8 {
            0
        }
        /// Shadow.
        fn unwrap(&self) -> u8 {
            0
        }
        /// Shadow.
        fn send(&self) -> u8 {
            0
        }
        /// Shadow.
        fn run(&self) -> u8 {
            0
        }
        /// Shadow.
        fn lower(&self) -> u8 {
            0
        }
        /// Shadow.
        fn edges(&self) -> u8 {
            0
        }
        /// Shadow.
        fn id(&self) -> u8 {
            0
        }
        /// Shadow.
        fn init(&self) -> u8 {
            0
        }
        /// Shadow.
        fn output(&self) -> u8 {
            0
        }
        /// Shadow.
        fn into_iter(self) -> u8
        where
            Self: Sized,
        {
            0
        }
        /// Shadow.
        fn iter(&self) -> u8 {
            0
        }
        /// Shadow.
        fn next(&mut self) -> u8 {
            0
        }
        /// Shadow.
        fn collect(&self) -> u8 {
            0
        }
        /// Shadow.
        fn shared(&self) -> u8 {
            0
        }
        /// Shadow.
        fn into_step_error(self) -> u8
        where
            Self: Sized,
        {
            0
        }
    }
    impl<X: ?Sized> Evil for X {}

    /// Local.
    #[step]
    pub fn one(x: i64) -> i64 {
        x + 1
    }
    /// Actors, async, two inputs, fallible.
    #[step(mode = "actors", replicas = 2)]
    pub async fn two(x: i64, y: i64) -> Result<i64, String> {
        Ok(x + y)
    }
    /// Batched.
    #[step(mode = "actors", batch(max_size = 4, wait_ms = 1))]
    pub fn three(xs: Vec<i64>) -> Vec<i64> {
        xs
    }
    /// A stream.
    #[step(mode = "tasks")]
    pub fn four(x: i64) -> ItemStream<i64> {
        ItemStream::iter(vec![x, x + 1])
    }
    /// A `&mut self` model.
    #[derive(Debug)]
    pub struct Mm {
        k: i64,
    }

    #[step(mode = "actors")]
    impl Mm {
        /// Builds.
        pub fn new(k: i64) -> Self {
            Mm { k }
        }
        /// Multiplies.
        pub fn call(&mut self, x: i64) -> i64 {
            x * self.k
        }
    }

    /// A concurrent model.
    #[derive(Debug)]
    pub struct Cc {
        k: i64,
    }

    #[step(mode = "tasks", concurrent)]
    impl Cc {
        /// Builds.
        pub fn new(k: i64) -> Result<Self, String> {
            Ok(Cc { k })
        }
        /// Adds.
        pub async fn call(&self, x: i64) -> i64 {
            x + self.k
        }
    }
}

#[test]
fn blanket_trait_methods_in_scope_do_not_capture_method_calls() {
    use evil_traits::{four, one, three, two, Cc, Mm};
    let x = Input::<i64>::new().shared();
    let n = Cc::bind(1, Mm::bind(2, three(two(one(x.clone()), x))));
    let p = up(four(n).collect());
    // ((1 + 1) + 1) * 2 + 1 = 7
    assert_eq!(p.call(1).unwrap(), vec![7, 8]);
}

/// Steps named like framework methods, modules and generated items.
pub mod step_names {
    use pipeline_core::prelude::*;

    /// s
    #[step]
    pub fn build(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn node(x: i64) -> i64 {
        x + 2
    }
    /// s
    #[step]
    pub fn input(x: i64) -> i64 {
        x + 3
    }
    /// s
    #[step]
    pub fn deploy(x: i64) -> i64 {
        x + 4
    }
    /// s
    #[step]
    pub fn bind(x: i64) -> i64 {
        x + 5
    }
    /// s
    #[step]
    pub fn step(x: i64) -> i64 {
        x + 6
    }
    /// s
    #[step]
    pub fn route(x: i64) -> i64 {
        x + 7
    }
    /// s
    #[step]
    pub fn shared(x: i64) -> i64 {
        x + 8
    }
    /// s
    #[step]
    pub fn then(x: i64) -> i64 {
        x + 9
    }
    /// s
    #[step]
    pub fn info(x: i64) -> i64 {
        x + 10
    }
    /// s
    #[step]
    pub fn eval(x: i64) -> i64 {
        x + 11
    }
    /// s
    #[step]
    pub fn wire(x: i64) -> i64 {
        x + 12
    }
    /// s
    #[step]
    pub fn main(x: i64) -> i64 {
        x + 13
    }
    /// s
    #[step]
    pub fn lower(x: i64) -> i64 {
        x + 14
    }
    /// s
    #[step]
    pub fn boxed(x: i64) -> i64 {
        x + 15
    }
    /// s
    #[step]
    pub fn combine(x: i64) -> i64 {
        x + 16
    }
    /// s
    #[step]
    pub fn init(x: i64) -> i64 {
        x + 17
    }
    /// s
    #[step]
    pub fn edges(x: i64) -> i64 {
        x + 18
    }
    /// s
    #[step]
    pub fn probe(x: i64) -> i64 {
        x + 19
    }
    /// s
    #[step]
    pub fn pump(x: i64) -> i64 {
        x + 20
    }
    /// s
    #[step]
    pub fn ready(x: i64) -> i64 {
        x + 21
    }
    /// s
    #[step]
    pub fn output(x: i64) -> i64 {
        x + 22
    }
    /// s
    #[step]
    pub fn state(x: i64) -> i64 {
        x + 23
    }
    /// s
    #[step]
    pub fn ctx(x: i64) -> i64 {
        x + 24
    }
    /// s
    #[step]
    pub fn inputs(x: i64) -> i64 {
        x + 25
    }
    /// s
    #[step]
    pub fn collect(x: i64) -> i64 {
        x + 26
    }
    /// s
    #[step]
    pub fn map_each(x: i64) -> i64 {
        x + 27
    }
    /// s
    #[step]
    pub fn pipeline(x: i64) -> i64 {
        x + 28
    }
    /// s
    #[step]
    pub fn private(x: i64) -> i64 {
        x + 29
    }
    /// s
    #[step]
    pub fn __private(x: i64) -> i64 {
        x + 30
    }

    /// The chain of all of them.
    pub fn go() -> i64 {
        let n = main(Input::<i64>::new());
        let n = build(node(input(deploy(bind(step(route(shared(then(info(
            eval(wire(n)),
        ))))))))));
        let n = inputs(ctx(state(output(ready(pump(probe(edges(init(
            combine(boxed(lower(n))),
        )))))))));
        let n = __private(private(pipeline(map_each(collect(n)))));
        n.deploy().unwrap().call(0).unwrap()
    }
}

#[test]
fn steps_named_like_framework_methods_and_generated_items() {
    assert_eq!(step_names::go(), (1..=30).sum::<i64>());
    assert_eq!(step_names::deploy::call(1) + step_names::bind::call(1), 11);
}

/// Steps named like prelude types, traits and variants, and raw names.
#[allow(non_snake_case)]
pub mod prelude_names {
    use pipeline_core::prelude::*;

    /// s
    #[step]
    pub fn Send(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Sync(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Box(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Vec(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Option(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Some(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Ok(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Err(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Clone(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Default(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Sized(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Into(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn From(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Iterator(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Fn(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Drop(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Copy(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Future(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn String(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Result(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Pipeline(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Upstream(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn ReplicaContext(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Mode(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn Deploy(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn BoxError(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn PipelineError(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn r#gen(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn r#try(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn r#dyn(x: i64) -> i64 {
        x + 1
    }
    /// s
    #[step]
    pub fn union(x: i64) -> i64 {
        x + 1
    }
    /// A fallible async step in the same module (full paths: `Result`,
    /// `Ok` and `String` are steps here).
    #[step]
    pub async fn fallible(x: i64) -> ::std::result::Result<i64, ::std::string::String> {
        ::std::result::Result::Ok(x + 1)
    }
    /// A model in the same module.
    #[derive(Debug)]
    pub struct M;

    #[step(mode = "actors")]
    impl M {
        /// Builds.
        pub fn new(_ctx: &::pipeline_core::ReplicaContext) -> Self {
            M
        }
        /// Adds one.
        pub fn call(&mut self, x: i64) -> i64 {
            x + 1
        }
    }
    /// A batched step in the same module.
    #[step(mode = "actors", batch(max_size = 2, wait_ms = 0))]
    pub fn batched(xs: ::std::vec::Vec<i64>) -> ::std::vec::Vec<i64> {
        xs.into_iter().map(|x| x + 1).collect()
    }
    /// A stream step in the same module.
    #[step]
    pub fn stream(x: i64) -> ItemStream<i64> {
        ItemStream::iter(0..x)
    }
}

#[test]
fn steps_named_like_prelude_items_and_raw_keywords() {
    use prelude_names::*;
    let n = Send(Sync(Box(Vec(Option(Some(Ok(Err(Clone(Default(
        Sized(Into(From(Iterator(Fn(Drop(Copy(Future(String(
            Result(Input::<i64>::new()),
        ))))))))),
    ))))))))));
    let n = prelude_names::Pipeline(prelude_names::Upstream(prelude_names::ReplicaContext(
        prelude_names::Mode(prelude_names::Deploy(prelude_names::BoxError(
            prelude_names::PipelineError(r#gen(r#try(r#dyn(union(fallible(M::bind(batched(n)))))))),
        ))),
    )));
    let p = up(stream(n).collect());
    assert_eq!(p.call(0).unwrap().len(), 34);
    assert_eq!(
        p.graph()
            .nodes()
            .iter()
            .filter(|n| n.label == "gen")
            .count(),
        1
    );
}

/// User macros named like std's and tracing's, textually in scope where
/// steps are defined: each expands to a compile error if the expansion
/// used it.
#[allow(unused_macros)]
pub mod user_macros {
    macro_rules! concat {
        ($($t:tt)*) => {
            compile_error!("user concat")
        };
    }
    macro_rules! stringify {
        ($($t:tt)*) => {
            compile_error!("user stringify")
        };
    }
    macro_rules! module_path {
        ($($t:tt)*) => {
            compile_error!("user module_path")
        };
    }
    macro_rules! file {
        ($($t:tt)*) => {
            compile_error!("user file")
        };
    }
    macro_rules! line {
        ($($t:tt)*) => {
            compile_error!("user line")
        };
    }
    macro_rules! column {
        ($($t:tt)*) => {
            compile_error!("user column")
        };
    }
    macro_rules! format {
        ($($t:tt)*) => {
            compile_error!("user format")
        };
    }
    macro_rules! format_args {
        ($($t:tt)*) => {
            compile_error!("user format_args")
        };
    }
    macro_rules! panic {
        ($($t:tt)*) => {
            compile_error!("user panic")
        };
    }
    macro_rules! assert {
        ($($t:tt)*) => {
            compile_error!("user assert")
        };
    }
    macro_rules! vec {
        ($($t:tt)*) => {
            compile_error!("user vec")
        };
    }
    macro_rules! matches {
        ($($t:tt)*) => {
            compile_error!("user matches")
        };
    }
    macro_rules! unreachable {
        ($($t:tt)*) => {
            compile_error!("user unreachable")
        };
    }
    macro_rules! todo {
        ($($t:tt)*) => {
            compile_error!("user todo")
        };
    }
    macro_rules! write {
        ($($t:tt)*) => {
            compile_error!("user write")
        };
    }
    macro_rules! env {
        ($($t:tt)*) => {
            compile_error!("user env")
        };
    }
    macro_rules! debug_assert {
        ($($t:tt)*) => {
            compile_error!("user debug_assert")
        };
    }
    macro_rules! info {
        ($($t:tt)*) => {
            compile_error!("user info")
        };
    }
    macro_rules! debug {
        ($($t:tt)*) => {
            compile_error!("user debug")
        };
    }
    macro_rules! trace {
        ($($t:tt)*) => {
            compile_error!("user trace")
        };
    }
    macro_rules! warn {
        ($($t:tt)*) => {
            compile_error!("user warn")
        };
    }
    macro_rules! error {
        ($($t:tt)*) => {
            compile_error!("user error")
        };
    }
    macro_rules! ready {
        ($($t:tt)*) => {
            compile_error!("user ready")
        };
    }
    macro_rules! pin {
        ($($t:tt)*) => {
            compile_error!("user pin")
        };
    }
    macro_rules! join {
        ($($t:tt)*) => {
            compile_error!("user join")
        };
    }
    macro_rules! select {
        ($($t:tt)*) => {
            compile_error!("user select")
        };
    }
    macro_rules! quote {
        ($($t:tt)*) => {
            compile_error!("user quote")
        };
    }
    macro_rules! step {
        ($($t:tt)*) => {
            compile_error!("user step")
        };
    }

    use pipeline_core::prelude::*;

    /// Local.
    #[step]
    pub fn a(x: i64) -> i64 {
        x + 1
    }
    /// Tasks, async, fallible.
    #[step(mode = "tasks")]
    pub async fn b(x: i64) -> Result<i64, String> {
        Ok(x + 1)
    }
    /// Batched.
    #[step(mode = "actors", batch(max_size = 2, wait_ms = 0))]
    pub fn c(xs: Vec<i64>) -> Vec<i64> {
        xs
    }
    /// Remote-capable actors.
    #[step(mode = "actors", remote)]
    pub fn d(x: i64) -> i64 {
        x
    }
    /// A stream.
    #[step]
    pub fn e(x: i64) -> ItemStream<i64> {
        ItemStream::iter(0..x)
    }
    /// An autoscaled model with a fallible `new`.
    #[derive(Debug)]
    pub struct M;

    #[step(mode = "actors", autoscale(max_replicas = 2))]
    impl M {
        /// Builds.
        pub fn new() -> Result<Self, String> {
            Ok(M)
        }
        /// Identity.
        pub fn call(&mut self, x: i64) -> i64 {
            x
        }
    }
    /// A concurrent model.
    #[derive(Debug)]
    pub struct C;

    #[step(mode = "tasks", concurrent)]
    impl C {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext) -> Self {
            C
        }
        /// Identity.
        pub async fn call(&self, x: i64) -> i64 {
            x
        }
    }
}

#[test]
fn user_macros_named_like_std_macros_do_not_capture_the_expansion() {
    use user_macros::*;
    let p = up(e(C::bind(M::bind(d(c(b(a(Input::new()))))))).collect());
    assert_eq!(p.call(1).unwrap(), vec![0, 1, 2]);
}

// ---------------------------------------------------------------------------
// Attributes on steps and on their arguments.

/// Attributes a user puts on functions.
pub mod attrs {
    use pipeline_core::prelude::*;

    /// `#[must_use]` after the attribute.
    #[step]
    #[must_use]
    pub fn must_use_after(x: i64) -> i64 {
        x + 1
    }
    /// `#[must_use]` before the attribute.
    #[must_use]
    #[step]
    pub fn must_use_before(x: i64) -> i64 {
        x + 1
    }
    /// `#[track_caller]`.
    #[step]
    #[track_caller]
    pub fn tracked(x: i64) -> i64 {
        x + 3
    }
    /// `#[inline(always)]`.
    #[step]
    #[inline(always)]
    pub fn always_inline(x: i64) -> i64 {
        x + 4
    }
    /// `#[inline(never)]` and `#[cold]`.
    #[step]
    #[inline(never)]
    #[cold]
    pub fn cold(x: i64) -> i64 {
        x + 5
    }
    #[doc = "Documented through `#[doc = ..]`."]
    #[step]
    pub fn doc_attr(x: i64) -> i64 {
        x + 6
    }
    /// `#[doc(alias)]`.
    #[step]
    #[doc(alias = "plus_seven")]
    pub fn aliased(x: i64) -> i64 {
        x + 7
    }
    /// `#[allow]` on one argument.
    #[step]
    pub fn arg_allow(#[allow(unused_variables)] x: i64, y: i64) -> i64 {
        y
    }
    /// `#[expect]` on one argument.
    #[step]
    pub fn arg_expect(#[expect(unused_variables)] x: i64, y: i64) -> i64 {
        y
    }
    /// `#[allow]` of a clippy lint on the step.
    #[step]
    #[allow(clippy::too_many_arguments)]
    pub fn many(a: i64, b: i64, c: i64, d: i64, e: i64, f: i64, g: i64, h: i64) -> i64 {
        a + b + c + d + e + f + g + h
    }
    /// `#[allow(unused_variables)]` on the step.
    #[step]
    #[allow(unused_variables)]
    pub fn allow_unused(x: i64, y: i64) -> i64 {
        y
    }
    /// `#[deny]` on the step, nothing to deny.
    #[step]
    #[deny(unused_variables, unused_mut)]
    pub fn denied(x: i64) -> i64 {
        x
    }
    /// `#[allow(clippy::needless_return)]` on an async step.
    #[step]
    #[allow(clippy::needless_return)]
    pub async fn early_return(x: i64) -> i64 {
        if x > 100 {
            return 100;
        }
        return x;
    }
    /// `#[cfg_attr]` on the item (both sides of the attribute).
    #[cfg_attr(test, doc = "In tests.")]
    #[step]
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn cfg_attr_item(x: i64) -> i64 {
        x + 8
    }
    /// `#[deprecated]` with a module-wide `allow(deprecated)`: see
    /// `deprecated_step` at the end for the item-level attempt.
    pub mod deprecated_here {
        #![allow(deprecated)]
        use pipeline_core::prelude::*;
        /// Old.
        #[step]
        #[deprecated(note = "use `attrs::tracked`")]
        pub fn old(x: i64) -> i64 {
            x + 9
        }
    }
}

#[test]
fn attributes_on_steps_and_arguments() {
    use attrs::*;
    let p = up(cold(always_inline(tracked(must_use_before(
        must_use_after(doc_attr(aliased(Input::<i64>::new()))),
    )))));
    assert_eq!(p.call(0).unwrap(), 7 + 6 + 1 + 1 + 3 + 4 + 5);
    let x = Input::<i64>::new().shared();
    let p = up(many(
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        arg_expect(x.clone(), arg_allow(x.clone(), x.clone())),
        early_return(denied(allow_unused(x.clone(), cfg_attr_item(x)))),
    ));
    assert_eq!(p.call(1).unwrap(), 7 + 9);
    #[allow(deprecated)]
    let old = deprecated_here::old(Input::<i64>::new());
    assert_eq!(up(old).call(1).unwrap(), 10);
    assert_eq!(must_use_after::call(1), 2);
}

// ---------------------------------------------------------------------------
// Patterns in arguments.

/// Argument patterns.
pub mod patterns {
    use pipeline_core::prelude::*;

    /// Tuple, `mut`, `_: ()` and array patterns.
    #[step]
    pub fn mixed((a, b): (i32, i32), mut c: i32, _: (), [d, e]: [i32; 2]) -> i32 {
        c += 1;
        a + b + c + d + e
    }
    /// A nested tuple pattern with a wildcard inside.
    #[step]
    pub fn nested(((a, _), b): ((i32, String), Option<i32>)) -> i32 {
        a + b.unwrap_or(0)
    }
    /// A tuple-struct pattern.
    #[derive(Clone, Debug)]
    pub struct W(pub i32);

    /// Takes a `W` apart.
    #[step]
    pub fn unwrap_w(W(x): W) -> i32 {
        x
    }
    /// An `@` binding.
    #[step]
    pub fn at_binding(all @ (a, _): (i32, i32)) -> i32 {
        all.1 * a
    }
    /// `mut` on a `Vec`.
    #[step]
    pub fn push_one(mut v: Vec<i32>) -> Vec<i32> {
        v.push(1);
        v
    }
    /// `(i32, i32)` from one `i32`.
    #[step]
    pub fn pair(x: i32) -> (i32, i32) {
        (x, x * 2)
    }
    /// The unit value.
    #[step]
    pub fn unit(_x: i32) {}
    /// A two-element array.
    #[step]
    pub fn arr2(x: i32) -> [i32; 2] {
        [x, x + 1]
    }
}

#[test]
fn argument_patterns() {
    use patterns::*;
    let x = Input::<i32>::new().shared();
    let p = up(mixed(pair(x.clone()), x.clone(), unit(x.clone()), arr2(x)));
    // (1 + 2) + (1 + 1) + (1 + 2) = 8
    assert_eq!(p.call(1).unwrap(), 8);
    assert_eq!(mixed::call((1, 2), 1, (), [1, 2]), 8);
    assert_eq!(
        up(nested(Input::new()))
            .call(((1, "x".into()), Some(2)))
            .unwrap(),
        3
    );
    assert_eq!(up(unwrap_w(Input::new())).call(W(4)).unwrap(), 4);
    assert_eq!(up(at_binding(Input::new())).call((2, 3)).unwrap(), 6);
    assert_eq!(
        up(push_one(Input::new())).call(vec![0]).unwrap(),
        vec![0, 1]
    );
}

// ---------------------------------------------------------------------------
// Async steps holding values across awaits.

/// Async bodies.
pub mod asyncs {
    use pipeline_core::prelude::*;

    /// Holds a `Vec` across two awaits.
    #[step(mode = "tasks")]
    pub async fn hold(s: String) -> usize {
        let v: Vec<char> = s.chars().collect();
        tokio::task::yield_now().await;
        let n = v.len();
        tokio::task::yield_now().await;
        n + v.len()
    }
    /// Holds a tokio mutex guard across an await.
    #[step(mode = "actors", replicas = 2)]
    pub async fn running_total(x: u64) -> u64 {
        static TOTAL: tokio::sync::Mutex<u64> = tokio::sync::Mutex::const_new(0);
        let mut total = TOTAL.lock().await;
        *total += x;
        tokio::task::yield_now().await;
        *total
    }
    /// `?` after an await.
    #[step]
    pub async fn parse_later(s: String) -> Result<i32, std::num::ParseIntError> {
        tokio::task::yield_now().await;
        let v: i32 = s.trim().parse()?;
        Ok(v)
    }
    /// An async block awaited inside.
    #[step]
    pub async fn inner_block(x: i32) -> i32 {
        let f = async move { x * 2 };
        f.await + 1
    }
    /// A closure capturing an argument, across an await.
    #[step(mode = "actors", placement = "thread")]
    pub async fn closure(x: i32) -> i32 {
        let c = |y: i32| y + x;
        tokio::task::yield_now().await;
        c(1)
    }
    /// A `!Sync` value held across an await.
    #[step(mode = "tasks")]
    pub async fn hold_cell(c: std::cell::Cell<i64>) -> i64 {
        tokio::task::yield_now().await;
        c.get() + 1
    }
    /// To a `Cell`.
    #[step]
    pub fn to_cell(x: i64) -> std::cell::Cell<i64> {
        std::cell::Cell::new(x)
    }
    /// An async model that keeps a history.
    #[derive(Debug)]
    pub struct History {
        seen: Vec<i32>,
    }

    #[step(mode = "actors", placement = "task")]
    impl History {
        /// Builds.
        pub fn new(_: &ReplicaContext) -> Self {
            History { seen: vec![] }
        }
        /// Records and answers the history.
        pub async fn call(&mut self, x: i32) -> Vec<i32> {
            self.seen.push(x);
            tokio::task::yield_now().await;
            self.seen.clone()
        }
    }
}

#[test]
fn async_steps_holding_values_across_awaits() {
    use asyncs::*;
    assert_eq!(up(hold(Input::new())).call("abc".into()).unwrap(), 6);
    let p = up(running_total(Input::new()));
    assert_eq!(p.call(2).unwrap(), 2);
    assert_eq!(p.call(3).unwrap(), 5);
    let p = up(parse_later(Input::new()));
    assert_eq!(p.call(" 5 ".into()).unwrap(), 5);
    assert!(p.call("x".into()).is_err());
    assert_eq!(up(inner_block(closure(Input::new()))).call(1).unwrap(), 5);
    assert_eq!(up(hold_cell(to_cell(Input::new()))).call(1).unwrap(), 2);
    let p = up(History::bind(Input::new()));
    p.call(1).unwrap();
    assert_eq!(p.call(2).unwrap(), vec![1, 2]);
}

#[test]
fn an_async_steps_call_is_its_future() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let v = rt.block_on(asyncs::inner_block::call(3));
    assert_eq!(v, 7);
    let r = rt.block_on(asyncs::parse_later::call("9".into()));
    assert_eq!(r, Ok(9));
}

// ---------------------------------------------------------------------------
// Models of many kinds.

/// Model shapes.
pub mod models {
    use super::*;

    /// A `&mut self` model with `Drop`, consts, helpers and extra methods.
    #[derive(Debug)]
    pub struct Counter {
        n: i64,
        drops: Arc<AtomicUsize>,
    }

    impl Drop for Counter {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[step(mode = "actors", replicas = 2)]
    impl Counter {
        /// Where counting starts.
        pub const START: i64 = 100;
        /// Builds.
        pub fn new(drops: Arc<AtomicUsize>, builds: Arc<AtomicUsize>) -> Self {
            builds.fetch_add(1, Ordering::SeqCst);
            Counter {
                n: Self::START,
                drops,
            }
        }
        /// Counts; panics on a negative input.
        pub fn call(&mut self, x: i64) -> i64 {
            assert!(x >= 0, "negative input");
            self.n += 1;
            self.helper(x)
        }
        fn helper(&self, x: i64) -> i64 {
            x + self.n - Self::START
        }
        /// An extra public method.
        pub fn peek(&self) -> i64 {
            self.n
        }
        /// An associated function.
        pub fn start() -> i64 {
            Self::START
        }
    }

    /// A model built in tasks mode, with `Drop`.
    #[derive(Debug)]
    pub struct TaskState {
        drops: Arc<AtomicUsize>,
        builds: Arc<AtomicUsize>,
    }

    impl Drop for TaskState {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[step(mode = "tasks")]
    impl TaskState {
        /// Builds.
        pub fn new(drops: Arc<AtomicUsize>, builds: Arc<AtomicUsize>) -> Self {
            builds.fetch_add(1, Ordering::SeqCst);
            TaskState { drops, builds }
        }
        /// Answers the number of builds.
        pub fn call(&self, _x: i64) -> usize {
            self.builds.load(Ordering::SeqCst)
        }
    }

    /// A model whose `new` takes the context and four arguments and
    /// checks them through a private `Self::` helper.
    #[derive(Debug)]
    pub struct Many {
        a: i64,
        b: String,
        c: Vec<u8>,
        d: (u8, u8),
    }

    #[step]
    impl Many {
        /// Builds, or refuses a negative `a`.
        pub fn new(
            ctx: &ReplicaContext,
            a: i64,
            b: String,
            c: Vec<u8>,
            d: (u8, u8),
        ) -> Result<Self, String> {
            let _ = ctx.index();
            Self::validate(a)?;
            Ok(Self { a, b, c, d })
        }
        fn validate(a: i64) -> Result<(), String> {
            if a < 0 {
                Err(format!("negative a: {a}"))
            } else {
                Ok(())
            }
        }
        /// Formats everything.
        pub fn call(&self, x: i64, y: String) -> String {
            format!(
                "{}{}{}{}{}{}{}",
                self.a,
                self.b,
                self.c.len(),
                self.d.0,
                self.d.1,
                x,
                y
            )
        }
    }

    /// A model whose `call` returns its own type.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Echo {
        /// The value.
        pub k: i32,
    }

    #[step(mode = "tasks")]
    impl Echo {
        /// Builds.
        pub fn new(k: i32) -> Self {
            Echo { k }
        }
        /// A new `Self`.
        pub fn call(&mut self, x: i32) -> Self {
            Self { k: self.k + x }
        }
    }

    /// A model taking values of its own type as inputs.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Acc {
        /// The total.
        pub total: i64,
    }

    #[step(mode = "actors")]
    impl Acc {
        /// Builds.
        pub fn new(start: i64) -> Self {
            Acc { total: start }
        }
        /// Adds the others in.
        pub fn call(&mut self, other: Self, more: Option<Self>) -> Self {
            self.total += other.total + more.map(|a| a.total).unwrap_or(0);
            self.clone()
        }
    }

    /// Makes an `Acc`.
    #[step]
    pub fn acc(x: i64) -> Acc {
        Acc { total: x }
    }

    /// Maybe makes an `Acc`.
    #[step]
    pub fn maybe_acc(x: i64) -> Option<Acc> {
        (x > 0).then_some(Acc { total: x })
    }

    /// `const fn` helper and `new`, `where` clauses on the methods and on
    /// the impl.
    #[derive(Debug)]
    pub struct Wh {
        k: i32,
    }

    #[step]
    impl Wh
    where
        Wh: Send,
    {
        const fn twice(x: i32) -> i32 {
            x * 2
        }
        /// Builds.
        pub const fn new(k: i32) -> Self
        where
            Self: Sized,
        {
            Wh { k: Self::twice(k) }
        }
        /// Adds.
        pub fn call(&self, x: i32) -> i32
        where
            i32: Copy,
        {
            x + self.k
        }
    }

    /// `mut` patterns in `new` and `call`, and a tuple pattern.
    #[derive(Debug)]
    pub struct Pat {
        k: i32,
    }

    #[step]
    impl Pat {
        /// Builds.
        pub fn new(mut k: i32) -> Self {
            k += 1;
            Pat { k }
        }
        /// Adds everything.
        pub fn call(&self, mut x: i32, (a, b): (i32, i32)) -> i32 {
            x += a;
            x + b + self.k
        }
    }

    /// An enum as the model.
    #[derive(Clone, Copy, Debug)]
    pub enum Op {
        /// Adds.
        Add(i64),
        /// Multiplies.
        Mul(i64),
    }

    #[step(mode = "actors", replicas = 2)]
    impl Op {
        /// Builds.
        pub fn new(op: Op) -> Self {
            op
        }
        /// Applies.
        pub fn call(&self, x: i64) -> i64 {
            match *self {
                Op::Add(k) => x + k,
                Op::Mul(k) => x * k,
            }
        }
    }

    /// A tuple struct as the model.
    #[derive(Debug)]
    pub struct Tup(i64);

    #[step]
    impl Tup {
        /// Builds.
        pub fn new(k: i64) -> Self {
            Tup(k)
        }
        /// Subtracts.
        pub fn call(&self, x: i64) -> i64 {
            x - self.0
        }
    }

    /// A unit struct whose `new` takes only the context.
    #[derive(Debug)]
    pub struct Unit;

    #[step(mode = "actors", replicas = 3)]
    impl Unit {
        /// Builds, checking the context.
        pub fn new(ctx: &ReplicaContext) -> Self {
            assert!(ctx.index() < ctx.replicas());
            Unit
        }
        /// Identity.
        pub fn call(&self, x: i64) -> i64 {
            x
        }
    }

    /// Helper methods made by a macro inside the impl.
    #[derive(Debug)]
    pub struct Getters {
        k: i64,
        j: i64,
    }

    macro_rules! getters {
        ($($f:ident),*) => { $(fn $f(&self) -> i64 { self.$f })* };
    }

    #[step]
    impl Getters {
        getters!(k, j);
        /// Builds.
        pub fn new(k: i64) -> Self {
            Getters { k, j: k * 2 }
        }
        /// Adds both.
        pub fn call(&self, x: i64) -> i64 {
            x + self.k() + self.j()
        }
        #[cfg(any())]
        fn never(&self) -> i64 {
            compile_error!("cfg'd out")
        }
        #[cfg(not(any()))]
        fn always(&self) -> i64 {
            self.k
        }
        /// `#[cfg_attr]` on a helper.
        #[cfg_attr(not(any()), inline)]
        pub fn helper(&self) -> i64 {
            self.always()
        }
    }

    /// `#[expect]` on `new` and `call`, `#[doc(hidden)]`, `#[inline]`.
    #[derive(Debug)]
    pub struct Expecting {
        k: i64,
    }

    #[step]
    impl Expecting {
        /// Builds; `unused` is unused.
        #[expect(unused_variables)]
        pub fn new(k: i64, unused: i64) -> Self {
            Expecting { k }
        }
        /// Adds; `y` is unused.
        #[expect(unused_variables)]
        #[inline]
        pub fn call(&self, x: i64, y: i64) -> i64 {
            x + self.k
        }
        #[doc(hidden)]
        pub fn hidden(&self) -> i64 {
            self.k
        }
    }

    /// Restricted constructors, used from the parent module.
    pub mod restricted {
        use pipeline_core::prelude::*;

        /// `pub(super)` new and call.
        #[derive(Debug)]
        pub struct Sup {
            k: i64,
        }

        #[step]
        impl Sup {
            pub(super) fn new(k: i64) -> Self {
                Sup { k }
            }
            pub(super) fn call(&self, x: i64) -> i64 {
                x + self.k
            }
        }

        /// `pub(crate)` new and call.
        #[derive(Debug)]
        pub struct Krate {
            k: i64,
        }

        #[step]
        impl Krate {
            pub(crate) fn new(k: i64) -> Self {
                Krate { k }
            }
            pub(crate) fn call(&self, x: i64) -> i64 {
                x * self.k
            }
        }
    }

    /// Uses the `pub(super)` model from here.
    pub fn through_restricted(x: i64) -> i64 {
        let n = restricted::Sup::bind(1, restricted::Krate::bind(3, Input::<i64>::new()));
        n.deploy().unwrap().call(x).unwrap()
    }

    /// `impl` through `super::`, `crate::` and `self::` paths.
    #[derive(Debug)]
    pub struct ByPath {
        k: i64,
    }

    /// Holds the impl of `ByPath`.
    pub mod by_path_impl {
        use pipeline_core::prelude::*;

        #[step(mode = "actors")]
        impl super::ByPath {
            /// Builds.
            pub fn new(k: i64) -> Self {
                super::ByPath { k }
            }
            /// Shifts.
            pub fn call(&self, x: i64) -> i64 {
                x * 100 + self.k
            }
        }
    }

    /// Implemented through `crate::`.
    #[derive(Debug)]
    pub struct ByCratePath {
        k: i64,
    }

    #[step]
    impl crate::models::ByCratePath {
        /// Builds.
        pub fn new(k: i64) -> Self {
            Self { k }
        }
        /// Shifts.
        pub fn call(&self, x: i64) -> i64 {
            x * 1000 + self.k
        }
    }

    /// Implemented through `self::`.
    #[derive(Debug)]
    pub struct BySelfPath {
        k: i64,
    }

    #[step]
    impl self::BySelfPath {
        /// Builds.
        pub fn new(k: i64) -> Self {
            Self { k }
        }
        /// Adds.
        pub fn call(&self, x: i64) -> i64 {
            x + self.k
        }
    }
}

#[test]
fn a_models_drop_runs_for_each_replica_built_and_for_a_panicked_one() {
    use models::*;
    let drops = Arc::new(AtomicUsize::new(0));
    let builds = Arc::new(AtomicUsize::new(0));
    {
        let p = up(Counter::bind(
            drops.clone(),
            builds.clone(),
            Input::<i64>::new(),
        ));
        assert_eq!(p.call(5).unwrap(), 6);
        assert!(matches!(p.call(-1), Err(PipelineError::Panicked { .. })));
        for x in 0..4 {
            assert!(p.call(x).is_ok());
        }
        assert!(builds.load(Ordering::SeqCst) >= 2);
    }
    // Every model built (two replicas, and any rebuilt after the panic) is
    // dropped once the pipeline is.
    let (built, dropped) = (builds.load(Ordering::SeqCst), drops.load(Ordering::SeqCst));
    assert_eq!(built, dropped);
    assert_eq!(Counter::start(), 100);
    let c = Counter::new(Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    assert_eq!(c.peek(), 100);
}

#[test]
fn a_tasks_model_is_built_once_and_dropped_with_its_pipeline() {
    use models::*;
    let drops = Arc::new(AtomicUsize::new(0));
    let builds = Arc::new(AtomicUsize::new(0));
    {
        let p = up(TaskState::bind(
            drops.clone(),
            builds.clone(),
            Input::<i64>::new(),
        ));
        assert_eq!(p.call(1).unwrap(), 1);
        assert_eq!(p.call(2).unwrap(), 1);
    }
    assert_eq!(
        (builds.load(Ordering::SeqCst), drops.load(Ordering::SeqCst)),
        (1, 1)
    );
}

#[test]
fn models_with_many_arguments_self_paths_and_where_clauses() {
    use models::*;
    let s = Input::<String>::new().shared();
    let p = up(Many::bind(
        1,
        "b".into(),
        vec![1, 2],
        (3, 4),
        len(s.clone()),
        s,
    ));
    assert_eq!(p.call("zz".into()).unwrap(), "1b2342zz");
    let s = Input::<String>::new().shared();
    let err = Many::bind(-1, "b".into(), vec![], (0, 0), len(s.clone()), s)
        .deploy()
        .unwrap_err();
    assert!(format!("{err:?}").contains("negative a: -1"), "{err:?}");

    assert_eq!(
        up(Echo::bind(1, Input::new())).call(2).unwrap(),
        Echo::new(3)
    );
    assert_eq!(up(Wh::bind(2, Input::new())).call(2).unwrap(), 6);
    let x = Input::<i32>::new().shared();
    // x = 1: (1 + 1) + 2 + (0 + 1)
    assert_eq!(
        up(Pat::bind(0, x.clone(), patterns::pair(x)))
            .call(1)
            .unwrap(),
        5
    );
    assert_eq!(up(Getters::bind(1, Input::new())).call(0).unwrap(), 3);
    assert_eq!(Getters::new(4).helper(), 4);
    let x = Input::<i64>::new().shared();
    assert_eq!(up(Expecting::bind(1, 0, x.clone(), x)).call(1).unwrap(), 2);
}

#[test]
fn a_model_takes_values_of_its_own_type() {
    use models::*;
    let x = Input::<i64>::new().shared();
    let p = up(Acc::bind(10, acc(x.clone()), maybe_acc(x)));
    assert_eq!(p.call(1).unwrap(), Acc { total: 12 });
    assert_eq!(p.call(-1).unwrap(), Acc { total: 11 });
}

#[test]
fn enum_tuple_unit_restricted_and_path_models() {
    use models::*;
    let n = Op::bind(Op::Mul(3), Op::bind(Op::Add(1), Input::<i64>::new()));
    let n = BySelfPath::bind(
        1,
        ByCratePath::bind(2, ByPath::bind(3, Unit::bind(Tup::bind(1, n)))),
    );
    // x = 1: (1 + 1) * 3 - 1 = 5; * 100 + 3; * 1000 + 2; + 1
    assert_eq!(up(n).call(1).unwrap(), 503 * 1000 + 3);
    assert_eq!(through_restricted(2), 7);
}

/// Models named like framework types.
pub mod model_names {
    // (`use pipeline_core::ReplicaContext as Cx;` and `new(_ctx: &Cx)` is
    // refused: see the end of the file.)
    use pipeline_core::ReplicaContext;

    /// Named `Node`.
    #[derive(Debug)]
    pub struct Node {
        k: i64,
    }
    #[pipeline_core::step]
    impl Node {
        /// Builds.
        pub fn new(k: i64) -> Self {
            Node { k }
        }
        /// Adds.
        pub fn call(&self, x: i64) -> i64 {
            x + self.k
        }
    }
    /// Named `Input`.
    #[derive(Debug)]
    pub struct Input;
    #[pipeline_core::step]
    impl Input {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext) -> Self {
            Input
        }
        /// Doubles.
        pub fn call(&self, x: i64) -> i64 {
            x * 2
        }
    }
    /// Named `Output`.
    #[derive(Debug)]
    pub struct Output;
    #[pipeline_core::step]
    impl Output {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext) -> Self {
            Output
        }
        /// Triples.
        pub fn call(&self, x: i64) -> i64 {
            x * 3
        }
    }
    /// Named `Pipeline`.
    #[derive(Debug)]
    pub struct Pipeline;
    #[pipeline_core::step(mode = "actors")]
    impl Pipeline {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext) -> Self {
            Pipeline
        }
        /// Times five.
        pub fn call(&mut self, x: i64) -> i64 {
            x * 5
        }
    }
    /// Named `Shared`.
    #[derive(Debug)]
    pub struct Shared;
    #[pipeline_core::step(mode = "tasks")]
    impl Shared {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext) -> Self {
            Shared
        }
        /// Times seven.
        pub async fn call(&mut self, x: i64) -> i64 {
            x * 7
        }
    }
    /// Named `StepFn`.
    #[derive(Debug)]
    pub struct StepFn;
    #[pipeline_core::step]
    impl StepFn {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext) -> Self {
            StepFn
        }
        /// Times eleven.
        pub fn call(&self, x: i64) -> i64 {
            x * 11
        }
    }
    /// Named `State`.
    #[derive(Debug)]
    pub struct State;
    #[pipeline_core::step]
    impl State {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext) -> Self {
            State
        }
        /// Times thirteen.
        pub fn call(&self, x: i64) -> i64 {
            x * 13
        }
    }
    /// Named `Box`.
    #[derive(Debug)]
    pub struct Box;
    #[pipeline_core::step]
    impl Box {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext) -> Self {
            Box
        }
        /// Adds one.
        pub fn call(&self, x: i64) -> i64 {
            x + 1
        }
    }
    /// Named `Vec`.
    #[derive(Debug)]
    pub struct Vec;
    #[pipeline_core::step]
    impl Vec {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext) -> Self {
            Vec
        }
        /// Adds two.
        pub fn call(&self, x: i64) -> i64 {
            x + 2
        }
    }
    /// Named `Option`.
    #[derive(Debug)]
    pub struct Option;
    #[pipeline_core::step]
    impl Option {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext) -> Self {
            Option
        }
        /// Adds three.
        pub fn call(&self, x: i64) -> i64 {
            x + 3
        }
    }
    /// Named `Mutex`.
    #[derive(Debug)]
    pub struct Mutex;
    #[pipeline_core::step]
    impl Mutex {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext) -> Self {
            Mutex
        }
        /// Adds four.
        pub fn call(&mut self, x: i64) -> i64 {
            x + 4
        }
    }
}

#[test]
fn models_named_like_framework_and_std_types() {
    use model_names as m;
    let n = m::Node::bind(1, Input::<i64>::new());
    let n = m::Pipeline::bind(m::Output::bind(m::Input::bind(n)));
    let n = m::State::bind(m::StepFn::bind(m::Shared::bind(n)));
    let n = m::Mutex::bind(m::Option::bind(m::Vec::bind(m::Box::bind(n))));
    assert_eq!(up(n).call(0).unwrap(), 2 * 3 * 5 * 7 * 11 * 13 + 10);
}

// ---------------------------------------------------------------------------
// Raw identifiers and arguments named like the macro's internals.

/// Raw names.
pub mod raw {
    use pipeline_core::prelude::*;

    /// Raw step and argument names.
    #[step]
    pub fn r#async(r#fn: i64, r#struct: i64) -> i64 {
        r#fn * r#struct
    }

    /// A model whose type is a raw keyword.
    #[allow(non_camel_case_types)]
    #[derive(Debug)]
    pub struct r#type {
        k: i64,
    }

    #[step(mode = "actors")]
    impl r#type {
        /// Builds.
        pub fn new(r#ref: i64) -> Self {
            r#type { k: r#ref }
        }
        /// Adds.
        pub fn call(&self, r#in: i64) -> i64 {
            r#in + self.k
        }
    }
}

#[test]
fn raw_names_for_steps_models_and_arguments() {
    let x = Input::<i64>::new().shared();
    let p = up(raw::r#type::bind(4, raw::r#async(x.clone(), x)));
    assert_eq!(p.call(3).unwrap(), 13);
}

#[test]
fn a_raw_model_name_drops_its_prefix_as_a_function_step_does() {
    assert_eq!(<raw::r#type as StepFn>::INFO.name, "type");
    let node = raw::r#type::bind(1, Input::<i64>::new());
    let p = node
        .deploy_with(DeployOptions::new().replicas("type", 2))
        .expect("options for `type` reach the model");
    assert_eq!(p.report()[0].replicas, 2);
}

/// Arguments named like generated items.
pub mod internal_args {
    use pipeline_core::prelude::*;

    /// Names a generated body might use.
    #[step]
    #[allow(clippy::too_many_arguments)]
    pub fn f(
        inputs: i64,
        state: i64,
        ctx: i64,
        self_: i64,
        input: i64,
        node: i64,
        out: i64,
        cx: i64,
    ) -> i64 {
        inputs + state * 2 + ctx * 3 + self_ * 4 + input * 5 + node * 6 + out * 7 + cx * 8
    }
    /// Double-underscore names.
    #[step]
    #[allow(clippy::too_many_arguments, clippy::used_underscore_binding)]
    pub fn g(
        __node: i64,
        __inputs: i64,
        __state: i64,
        __ctx: i64,
        __out: i64,
        __x0: i64,
        __arg0: i64,
        __e: i64,
    ) -> i64 {
        __node
            + __inputs * 2
            + __state * 3
            + __ctx * 4
            + __out * 5
            + __x0 * 6
            + __arg0 * 7
            + __e * 8
    }
    /// Numbered names.
    #[step]
    #[allow(clippy::too_many_arguments)]
    pub fn h(
        arg0: i64,
        arg1: i64,
        x0: i64,
        x1: i64,
        a0: i64,
        in0: i64,
        input0: i64,
        i0: i64,
    ) -> i64 {
        arg0 + arg1 * 2 + x0 * 3 + x1 * 4 + a0 * 5 + in0 * 6 + input0 * 7 + i0 * 8
    }
    /// `__e` as the argument of a fallible step.
    #[step]
    pub fn fallible_e(__e: i64) -> Result<i64, String> {
        if __e < 0 {
            Err(format!("negative {__e}"))
        } else {
            Ok(__e)
        }
    }
    /// `__e` as the argument of a fallible model.
    #[derive(Debug)]
    pub struct FallibleE;

    #[step]
    impl FallibleE {
        /// Builds, or fails on a negative `__e`.
        pub fn new(__e: i64) -> Result<Self, String> {
            if __e < 0 {
                Err(format!("negative {__e}"))
            } else {
                Ok(FallibleE)
            }
        }
        /// Fails on a negative `__e`.
        pub fn call(&self, __e: i64) -> Result<i64, String> {
            if __e < 0 {
                Err(format!("negative {__e}"))
            } else {
                Ok(__e + 1)
            }
        }
    }
    /// Names `std`, `core` and the crate's as arguments.
    #[step]
    pub fn crates(std: i64, core: i64, pipeline_core: i64, tokio: i64) -> i64 {
        std + core * 2 + pipeline_core * 3 + tokio * 4
    }
    /// A model whose arguments are named like internals.
    #[derive(Debug)]
    pub struct Mx {
        k: i64,
    }

    #[step]
    impl Mx {
        /// Builds.
        pub fn new(ctx: &ReplicaContext, state: i64, inputs: i64) -> Self {
            let _ = ctx.index();
            Mx {
                k: state * 10 + inputs,
            }
        }
        /// Mixes.
        pub fn call(&mut self, ctx: i64, state: i64, model: i64, this: i64) -> i64 {
            self.k + ctx * 1000 + state * 100 + model * 10000 + this * 100000
        }
    }
}

#[test]
fn arguments_named_like_the_macros_internals() {
    use internal_args::*;
    let x = Input::<i64>::new().shared();
    let p = up(f(
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x,
    ));
    assert_eq!(p.call(1).unwrap(), 36);
    let x = Input::<i64>::new().shared();
    let p = up(g(
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x,
    ));
    assert_eq!(p.call(1).unwrap(), 36);
    let x = Input::<i64>::new().shared();
    let p = up(h(
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
        x,
    ));
    assert_eq!(p.call(1).unwrap(), 36);
    let p = up(FallibleE::bind(0, fallible_e(Input::new())));
    assert_eq!(p.call(1).unwrap(), 2);
    let err = p.call(-1).unwrap_err();
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "negative -1"
    );
    assert!(FallibleE::bind(-1, Input::<i64>::new()).deploy().is_err());
    let x = Input::<i64>::new().shared();
    assert_eq!(
        up(crates(x.clone(), x.clone(), x.clone(), x))
            .call(1)
            .unwrap(),
        10
    );
    let x = Input::<i64>::new().shared();
    let p = up(Mx::bind(1, 2, x.clone(), x.clone(), x.clone(), x));
    assert_eq!(p.call(1).unwrap(), 12 + 1000 + 100 + 10000 + 100000);
}

// ---------------------------------------------------------------------------
// Steps made by `macro_rules!` from fragments.

/// Steps whose types arrive as `macro_rules!` fragments.
pub mod fragments {
    use pipeline_core::prelude::*;

    macro_rules! typed_step {
        ($(#[$m:meta])* $vis:vis fn $name:ident($a:ident: $t:ty) -> $r:ty $body:block) => {
            $(#[$m])*
            #[step]
            $vis fn $name($a: $t) -> $r $body
        };
    }

    typed_step!(
        /// Types as `ty` fragments.
        pub fn frag_plain(x: i64) -> i64 {
            x + 1
        }
    );
    typed_step!(
        /// An `Option` output as a `ty` fragment.
        pub fn frag_option(x: i64) -> Option<i64> {
            (x > 0).then_some(x)
        }
    );

    macro_rules! ok_type {
        ($name:ident, $t:ty) => {
            /// The `Ok` type as a fragment, the error written here.
            #[step]
            pub fn $name(x: Option<i64>) -> Result<$t, String> {
                x.ok_or_else(|| "none".to_string())
            }
        };
    }
    ok_type!(frag_ok, i64);

    macro_rules! batched_ty {
        ($name:ident, $t:ty) => {
            /// Batched, the item type a fragment.
            #[step(mode = "actors", batch(max_size = 4, wait_ms = 1))]
            pub fn $name(xs: Vec<$t>) -> Vec<$t> {
                xs.into_iter().map(|x| x * 2).collect()
            }
        };
    }
    batched_ty!(frag_batch, i64);

    macro_rules! stream_ty {
        ($name:ident, $o:ty) => {
            /// A stream output as a fragment.
            #[step(mode = "tasks")]
            pub fn $name(x: i64) -> $o {
                ItemStream::iter(0..x)
            }
        };
    }
    stream_ty!(frag_stream, ItemStream<i64>);

    macro_rules! pattern_arg {
        ($name:ident, $p:pat, $t:ty) => {
            /// The argument pattern as a fragment.
            #[step]
            pub fn $name($p: $t) -> i64 {
                7
            }
        };
    }
    pattern_arg!(frag_pattern, _, Vec<i64>);

    macro_rules! model_for {
        ($t:ty, $k:ty, $in:ty, $out:ty) => {
            #[step(mode = "actors", replicas = 2)]
            impl $t {
                /// Builds.
                pub fn new(k: $k) -> Self {
                    Self { k }
                }
                /// Multiplies.
                pub fn call(&self, x: $in) -> $out {
                    x * self.k
                }
            }
        };
    }

    /// Its impl comes from `model_for!`.
    #[derive(Debug)]
    pub struct MacModel {
        k: i64,
    }
    model_for!(MacModel, i64, i64, i64);

    macro_rules! model_ident {
        ($t:ident, $ctx:ty) => {
            /// Defined by `model_ident!`.
            #[derive(Debug)]
            pub struct $t {
                k: i64,
            }
            #[step]
            impl $t {
                /// Builds.
                pub fn new(_ctx: &$ctx, k: i64) -> Self {
                    $t { k }
                }
                /// Subtracts.
                pub fn call(&mut self, x: i64) -> i64 {
                    x - self.k
                }
            }
        };
    }
    model_ident!(IdentModel, ReplicaContext);

    macro_rules! remote_ty {
        ($name:ident, $t:ty, $o:ty) => {
            /// Remote, its types fragments.
            #[step(remote)]
            pub fn $name(x: $t) -> $o {
                x.len()
            }
        };
    }
    remote_ty!(frag_remote, String, usize);

    macro_rules! wrap_item {
        ($i:item) => {
            #[step]
            $i
        };
    }
    wrap_item!(
        /// A whole item through an `item` fragment (infallible).
        pub fn frag_item(x: usize) -> i64 {
            x as i64
        }
    );
}

#[test]
fn steps_and_models_from_macro_rules_fragments() {
    use fragments::*;
    let n = frag_option(frag_plain(Input::<i64>::new()));
    let n = IdentModel::bind(1, MacModel::bind(10, frag_batch(frag_ok(n))));
    let p = up(n);
    // x = 1: 2 -> Some(2) -> 2 -> 4 -> 40 -> 39
    assert_eq!(p.call(1).unwrap(), 39);
    assert!(p.call(-1).is_err());
    let p = up(frag_stream(Input::new()).collect());
    assert_eq!(p.call(3).unwrap(), vec![0, 1, 2]);
    assert_eq!(up(frag_pattern(Input::new())).call(vec![]).unwrap(), 7);
    assert_eq!(
        up(frag_item(frag_remote(Input::new())))
            .call("abc".into())
            .unwrap(),
        3
    );
    assert!(<frag_remote<()> as StepFn>::wire().is_some());
}

// ---------------------------------------------------------------------------
// Trait objects and `Send` but not `Sync` values.

/// Trait objects in and out.
pub mod dyns {
    use super::*;

    /// A scorer, `Send + Sync` through its supertraits.
    pub trait Scorer: Send + Sync {
        /// Scores.
        fn score(&self, x: i64) -> i64;
    }

    /// Doubles.
    #[derive(Debug)]
    pub struct Double;

    impl Scorer for Double {
        fn score(&self, x: i64) -> i64 {
            x * 2
        }
    }

    /// `Arc<dyn Scorer>` out.
    #[step]
    pub fn pick(_x: i64) -> Arc<dyn Scorer> {
        Arc::new(Double)
    }
    /// `Arc<dyn Scorer>` in.
    #[step(mode = "tasks")]
    pub fn apply(s: Arc<dyn Scorer>, x: i64) -> i64 {
        s.score(x)
    }
    /// `Box<dyn Scorer>` out.
    #[step(mode = "actors")]
    pub fn pick_box(_x: i64) -> Box<dyn Scorer> {
        Box::new(Double)
    }
    /// `Box<dyn Scorer>` in.
    #[step]
    pub fn apply_box(s: Box<dyn Scorer>, x: i64) -> i64 {
        s.score(x)
    }
    /// `Box<dyn Any + Send>` out.
    #[step]
    pub fn any_out(x: i64) -> Box<dyn std::any::Any + Send> {
        Box::new(x)
    }
    /// `Box<dyn Any + Send>` in.
    #[step(mode = "tasks")]
    pub fn any_in(b: Box<dyn std::any::Any + Send>) -> i64 {
        b.downcast::<i64>().map(|b| *b).unwrap_or(-1)
    }
    /// A `Send`-only job.
    pub type Job = Box<dyn FnOnce() -> i64 + Send>;

    /// Makes a job.
    #[step(mode = "actors")]
    pub fn make_job(k: i64) -> Job {
        Box::new(move || k * 2)
    }
    /// Runs a job.
    #[step(mode = "tasks")]
    pub fn run_job(j: Job) -> i64 {
        j()
    }
    /// A `RefCell` out.
    #[step(mode = "actors")]
    pub fn to_refcell(x: i64) -> std::cell::RefCell<String> {
        std::cell::RefCell::new(x.to_string())
    }
    /// A `RefCell` in.
    #[step(mode = "tasks")]
    pub fn from_refcell(r: std::cell::RefCell<String>) -> String {
        r.into_inner()
    }
    /// A channel's receiver out.
    #[step]
    pub fn chan(n: i64) -> std::sync::mpsc::Receiver<i64> {
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..n {
            tx.send(i).unwrap();
        }
        rx
    }
    /// A channel's receiver in.
    #[step(mode = "actors")]
    pub fn drain(rx: std::sync::mpsc::Receiver<i64>) -> i64 {
        rx.try_iter().sum()
    }
    /// A boxed error as a value.
    #[step]
    pub fn err_value(x: i64) -> Box<dyn std::error::Error + Send + Sync> {
        format!("e{x}").into()
    }
    /// A boxed error as an input.
    #[step(mode = "tasks")]
    pub fn err_text(e: Box<dyn std::error::Error + Send + Sync>) -> String {
        e.to_string()
    }
}

#[test]
fn trait_objects_and_send_only_values_cross_steps() {
    use dyns::*;
    let x = Input::<i64>::new().shared();
    assert_eq!(up(apply(pick(x.clone()), x)).call(3).unwrap(), 6);
    let x = Input::<i64>::new().shared();
    assert_eq!(up(apply_box(pick_box(x.clone()), x)).call(3).unwrap(), 6);
    assert_eq!(up(any_in(any_out(Input::new()))).call(3).unwrap(), 3);
    assert_eq!(up(run_job(make_job(Input::new()))).call(3).unwrap(), 6);
    assert_eq!(
        up(from_refcell(to_refcell(Input::new()))).call(3).unwrap(),
        "3"
    );
    assert_eq!(up(drain(chan(Input::new()))).call(4).unwrap(), 6);
    assert_eq!(up(err_text(err_value(Input::new()))).call(4).unwrap(), "e4");
}

// ---------------------------------------------------------------------------
// Remote steps: the wire round-trips values of many types (in process,
// no worker; the step itself runs locally here).

/// Remote-capable steps.
pub mod remotes {
    use pipeline_core::prelude::*;
    use std::borrow::Cow;
    use std::collections::HashMap;

    /// A serde enum.
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub enum Cmd {
        /// Adds.
        Add(i64),
        /// Negates.
        Neg,
        /// Sets.
        Set {
            /// The value.
            v: i64,
        },
    }

    /// Applies a command.
    #[step(remote)]
    pub fn apply(c: Cmd, x: i64) -> i64 {
        match c {
            Cmd::Add(k) => x + k,
            Cmd::Neg => -x,
            Cmd::Set { v } => v,
        }
    }
    /// Unit in and out.
    #[step(remote)]
    pub fn unit_out(_x: ()) {}
    /// Many serde types in.
    #[step(remote)]
    #[allow(clippy::type_complexity)]
    pub fn various(
        a: Option<(String, [u8; 3])>,
        b: HashMap<String, Vec<u8>>,
        c: Box<str>,
        d: Cow<'static, str>,
        e: char,
        f: u128,
        g: std::time::Duration,
    ) -> (usize, u128) {
        let c = c.into_string();
        let n = a.map(|x| x.0.len()).unwrap_or(0) + b.len() + c.len() + d.len() + e.len_utf8();
        (n + g.as_secs() as usize, f)
    }
    /// Async, fallible, tasks.
    #[step(mode = "tasks", remote)]
    pub async fn fallible(s: String) -> Result<Vec<Option<i32>>, std::num::ParseIntError> {
        s.split(',')
            .map(|x| {
                if x.is_empty() {
                    Ok(None)
                } else {
                    x.parse().map(Some)
                }
            })
            .collect()
    }
    /// A remote model with a tuple pattern and a serde enum.
    #[derive(Debug)]
    pub struct M {
        k: i64,
    }

    #[step(mode = "actors", remote)]
    impl M {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext, k: i64) -> Self {
            M { k }
        }
        /// Multiplies, or not.
        pub fn call(&mut self, (a, b): (i64, i64), c: Cmd) -> i64 {
            match c {
                Cmd::Neg => -(a * b * self.k),
                _ => a * b * self.k,
            }
        }
    }
    /// The pair for `M`.
    #[step]
    pub fn pair(x: i64) -> (i64, i64) {
        (x, x + 1)
    }
    /// The command for `M`.
    #[step]
    pub fn neg(_x: i64) -> Cmd {
        Cmd::Neg
    }
}

#[test]
fn remote_steps_wire_values_of_many_types() {
    use remotes::*;
    let w = <apply<()> as StepFn>::wire().unwrap();
    let bytes = w.encode_inputs(&(Cmd::Set { v: 3 }, 4)).unwrap();
    assert_eq!(w.decode_inputs(&bytes).unwrap(), (Cmd::Set { v: 3 }, 4));
    let w = <various<()> as StepFn>::wire().unwrap();
    let inputs = (
        Some(("ab".to_string(), [1u8, 2, 3])),
        HashMap::from([("k".to_string(), vec![1u8])]),
        Box::<str>::from("xyz"),
        Cow::Borrowed("q"),
        'é',
        u128::MAX,
        std::time::Duration::from_millis(1500),
    );
    let bytes = w.encode_inputs(&inputs).unwrap();
    assert_eq!(w.decode_inputs(&bytes).unwrap(), inputs);
    let out = w.encode_output(&(5, 7)).unwrap();
    assert_eq!(w.decode_output(&out).unwrap(), (5, 7));
    let w = <M as StepFn>::wire().unwrap();
    let bytes = w.encode_inputs(&((2, 3), Cmd::Neg)).unwrap();
    assert_eq!(w.decode_inputs(&bytes).unwrap(), ((2, 3), Cmd::Neg));
    let w = <unit_out<()> as StepFn>::wire().unwrap();
    w.decode_output(&w.encode_output(&()).unwrap()).unwrap();

    let p = up(fallible(Input::new()));
    assert_eq!(p.call("1,,3".into()).unwrap(), vec![Some(1), None, Some(3)]);
    assert!(p.call("x".into()).is_err());
    let x = Input::<i64>::new().shared();
    assert_eq!(up(M::bind(2, pair(x.clone()), neg(x))).call(1).unwrap(), -4);
}

// ---------------------------------------------------------------------------
// Paths inside bodies, items inside bodies.

/// A helper at the root.
fn helper(x: i64) -> i64 {
    x + 1000
}

/// Bodies naming `super::` and `self::`, and holding items.
pub mod bodies {
    use pipeline_core::prelude::*;

    fn helper(x: i64) -> i64 {
        x + 1
    }

    /// `use super::..` inside the body.
    #[step]
    pub fn via_use_super(x: i64) -> i64 {
        use super::helper as h;
        h(x)
    }
    /// `self::` inside the body.
    #[step]
    pub fn via_self(x: i64) -> i64 {
        self::helper(x)
    }
    /// `super::` inside an async body.
    #[step(mode = "tasks")]
    pub async fn via_super_async(x: i64) -> i64 {
        super::helper(x)
    }
    /// Items of every kind inside the body.
    #[step]
    pub fn nested_items(x: i64) -> i64 {
        struct Helper(i64);
        impl Helper {
            fn get(&self) -> i64 {
                self.0 * 2
            }
        }
        const K: i64 = 3;
        static S: i64 = 4;
        macro_rules! twice {
            ($e:expr) => {
                $e * 2
            };
        }
        fn inner(y: i64) -> i64 {
            y + 5
        }
        use std::ops::Add;
        Helper(x).get().add(K + S + twice!(inner(0)))
    }
    /// A model whose `call` names `super::` and `self::`.
    #[derive(Debug, Default)]
    pub struct Mdl;

    #[step]
    impl Mdl {
        /// Builds.
        pub fn new(_ctx: &ReplicaContext) -> Self {
            Mdl
        }
        /// Calls both helpers.
        pub fn call(&self, x: i64) -> i64 {
            super::helper(x) + self::helper(0)
        }
    }
    /// A private type.
    struct Priv(i64);

    /// Uses the private type in its body.
    #[step]
    pub fn private_type_in_body(x: i64) -> i64 {
        Priv(x).0
    }
}

#[test]
fn paths_and_items_inside_step_bodies() {
    use bodies::*;
    assert_eq!(up(via_use_super(Input::new())).call(0).unwrap(), 1000);
    assert_eq!(up(via_self(Input::new())).call(0).unwrap(), 1);
    assert_eq!(up(via_super_async(Input::new())).call(0).unwrap(), 1000);
    assert_eq!(
        up(nested_items(Input::new())).call(1).unwrap(),
        2 + 3 + 4 + 10
    );
    assert_eq!(up(Mdl::bind(Input::new())).call(0).unwrap(), 1001);
    assert_eq!(up(private_type_in_body(Input::new())).call(7).unwrap(), 7);
    assert_eq!(via_use_super::call(0), 1000);
}

// ---------------------------------------------------------------------------
// Attribute spellings the docs allow.

/// Spellings of the attribute's keys.
pub mod spellings {
    use pipeline_core::prelude::*;

    /// `#[step()]`.
    #[step()]
    pub fn empty_parens(x: i64) -> i64 {
        x + 1
    }
    /// `mode = "local"` written out.
    #[step(mode = "local")]
    pub fn explicit_local(x: i64) -> i64 {
        x + 1
    }
    /// A trailing comma.
    #[step(mode = "actors")]
    pub fn trailing_comma(x: i64) -> i64 {
        x + 1
    }
    /// Bare `batch`.
    #[step(mode = "actors", batch)]
    pub fn bare_batch(xs: Vec<i64>) -> Vec<i64> {
        xs
    }
    /// `batch()`.
    #[step(mode = "actors", batch())]
    pub fn empty_batch(xs: Vec<i64>) -> Vec<i64> {
        xs
    }
    /// `batch(max_size = 1, wait_ms = 0,)`.
    #[step(mode = "actors", batch(max_size = 1, wait_ms = 0,))]
    pub fn batch_of_one(xs: Vec<i64>) -> Vec<i64> {
        xs
    }
    /// A suffixed literal.
    #[step(mode = "actors", replicas = 2usize)]
    pub fn suffixed(x: i64) -> i64 {
        x
    }
    /// Underscores and a suffix in batch values.
    #[step(mode = "actors", batch(max_size = 1_000, wait_ms = 5u64))]
    pub fn underscored(xs: Vec<i64>) -> Vec<i64> {
        xs
    }
    /// Raw strings.
    #[step(mode = r"actors", placement = r#"task"#)]
    pub fn raw_strings(x: i64) -> i64 {
        x
    }
    /// An async body on a thread.
    #[step(mode = "actors", placement = "thread")]
    pub async fn async_on_thread(x: i64) -> i64 {
        x
    }
    /// Keys in another order.
    #[step(replicas = 3, mode = "actors")]
    pub fn keys_reversed(x: i64) -> i64 {
        x
    }
    /// Remote first.
    #[step(remote, mode = "tasks")]
    pub fn remote_first(x: i64) -> i64 {
        x + 1
    }
    /// A full path to the attribute, with keys.
    #[pipeline_core::step(mode = "actors", replicas = 1)]
    pub fn full_path(x: i64) -> i64 {
        x
    }
}

#[test]
fn attribute_spellings_the_docs_allow() {
    use spellings::*;
    let batch_of = |b: Option<pipeline_core::BatchPolicy>| b.map(|b| (b.max_size, b.wait_ms));
    assert_eq!(batch_of(<bare_batch<()> as StepFn>::BATCH), Some((32, 5)));
    assert_eq!(batch_of(<empty_batch<()> as StepFn>::BATCH), Some((32, 5)));
    assert_eq!(batch_of(<batch_of_one<()> as StepFn>::BATCH), Some((1, 0)));
    assert_eq!(
        batch_of(<underscored<()> as StepFn>::BATCH),
        Some((1000, 5))
    );
    assert_eq!(<suffixed<()> as StepFn>::INFO.replicas, 2);
    assert_eq!(<keys_reversed<()> as StepFn>::INFO.replicas, 3);
    assert_eq!(<raw_strings<()> as StepFn>::INFO.mode, Mode::Actors);
    assert_eq!(<empty_parens<()> as StepFn>::INFO.mode, Mode::Local);
    assert!(<remote_first<()> as StepFn>::wire().is_some());
    let n = empty_parens(Input::<i64>::new());
    let n = bare_batch(trailing_comma(explicit_local(n)));
    let n = underscored(suffixed(batch_of_one(empty_batch(n))));
    let n = full_path(remote_first(keys_reversed(async_on_thread(raw_strings(n)))));
    assert_eq!(up(n).call(1).unwrap(), 5);
}

// ---------------------------------------------------------------------------
// Two steps with one name in different modules, in one graph.

/// One `inc`.
pub mod first {
    use pipeline_core::prelude::*;

    /// Adds one; fails on 99.
    #[step(mode = "actors", replicas = 2)]
    pub fn inc(x: i64) -> Result<i64, String> {
        if x == 99 {
            Err("first".into())
        } else {
            Ok(x + 1)
        }
    }
}

/// Another `inc`.
pub mod second {
    use pipeline_core::prelude::*;

    /// Times ten; fails on 990.
    #[step(mode = "tasks")]
    pub fn inc(x: i64) -> Result<i64, String> {
        if x == 990 {
            Err("second".into())
        } else {
            Ok(x * 10)
        }
    }
}

#[test]
fn two_steps_of_one_name_from_two_modules_in_one_graph() {
    let p = up(second::inc(first::inc(Input::new())));
    assert_eq!(p.call(1).unwrap(), 20);
    let labels: Vec<_> = p.graph().steps().map(|n| n.label.clone()).collect();
    assert_eq!(labels, ["inc", "inc_1"]);
    let err = p.call(99).unwrap_err();
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "first"
    );
    assert!(err.to_string().contains("`inc`"), "{err}");
    let err = p.call(989).unwrap_err();
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "second"
    );
    assert!(err.to_string().contains("`inc_1`"), "{err}");
    let modes: Vec<_> = p.report().iter().map(|r| (r.step, r.running)).collect();
    assert_eq!(modes, [("inc", Mode::Actors), ("inc_1", Mode::Tasks)]);
}

// ---------------------------------------------------------------------------
// Stream outputs through an alias and a full path.

/// Stream steps spelled differently.
pub mod stream_spellings {
    use pipeline_core::prelude::*;

    /// An alias of `ItemStream`.
    pub type Words = ItemStream<String>;

    /// Returns the alias.
    #[step]
    pub fn words(s: String) -> Words {
        ItemStream::iter(s.split(' ').map(String::from).collect::<Vec<_>>())
    }
    /// Returns a full path.
    #[step(mode = "actors")]
    pub fn words_full(s: String) -> pipeline_core::ItemStream<String> {
        ItemStream::iter(s.split(' ').map(String::from).collect::<Vec<_>>())
    }
    /// A length.
    #[step]
    pub fn len(s: String) -> usize {
        s.len()
    }
    /// A model streaming from `&mut self`, with an `Arc` clone.
    #[derive(Debug)]
    pub struct Repeat {
        times: std::sync::Arc<usize>,
        calls: usize,
    }

    #[step(mode = "actors", placement = "task")]
    impl Repeat {
        /// Builds.
        pub fn new(times: usize) -> Self {
            Repeat {
                times: std::sync::Arc::new(times),
                calls: 0,
            }
        }
        /// Repeats, one more time per call.
        pub async fn call(&mut self, s: String) -> ItemStream<String> {
            self.calls += 1;
            let n = *self.times + self.calls;
            ItemStream::iter(std::iter::repeat_n(s, n))
        }
    }
}

#[test]
fn stream_outputs_through_an_alias_a_full_path_and_a_model() {
    use stream_spellings::*;
    let p = up(words(Input::new()).map_each(len).collect());
    assert_eq!(p.call("a bb".into()).unwrap(), vec![1, 2]);
    let p = up(words_full(Input::new()));
    let got: Vec<String> = p.call_iter("x yz".into()).map(|r| r.unwrap()).collect();
    assert_eq!(got, ["x", "yz"]);
    let p = up(Repeat::bind(1, Input::new()).collect());
    assert_eq!(p.call("a".into()).unwrap().len(), 2);
    assert_eq!(p.call("a".into()).unwrap().len(), 3);
}

// ---------------------------------------------------------------------------
// Helpers used above.

/// A string's length.
#[step]
pub fn len(s: String) -> i64 {
    s.len() as i64
}

// ---------------------------------------------------------------------------
// Shapes that do not compile, or warn, each valid Rust a user would write
// (found with a scratch crate; each is kept out of this file):
//
// FAULT (minor): a function step in a `#![no_implicit_prelude]` module
// (models compile there):
//     mod no_prelude {
//         #![no_implicit_prelude]
//         use ::pipeline_core::prelude::*;
//         #[step]
//         pub fn add_one(x: i64) -> i64 { x + 1 }
//     }
// error[E0433]: cannot find module or crate `diagnostic` in this scope
// (a batched step there adds: no function or associated item named `from`
// found for struct `Box<(dyn std::error::Error + Send + Sync + 'static)>`)
//
// FAULT: the replica context is recognised by its name only. A renamed
// import is refused as a reference argument, and the node's `bind` then
// lacks the argument (a second error where used):
//     use pipeline_core::ReplicaContext as Cx;
//     #[step]
//     impl M { fn new(_ctx: &Cx) -> Self { M } fn call(&self, x: i64) -> i64 { x } }
// error: a constructor argument is cloned into each replica: take `Cx`
//   instead of a reference
// And a user's own type named `ReplicaContext`, as a function step's
// input, is taken for the context (the message speaks of `new`), plus
// E0061 where the step is used:
//     #[derive(Clone, Debug)] pub struct ReplicaContext(pub i64);
//     #[step] pub fn with_ctx(x: i64, c: ReplicaContext) -> i64 { x + c.0 }
// error: take the replica's context by shared reference, `ctx:
//   &ReplicaContext`, as `new`'s first argument
//
// Undocumented limit: a step with 9 or more inputs ("a step takes at most
// 8 inputs; group them in a struct"; one error; the README does not say so).
// Limitation (one clear error): `fn new(name: impl Into<String>)` ("a
// constructor argument needs a concrete type, not `impl Trait`").

// ---------------------------------------------------------------------------
// Shapes this pass found refused, fixed since.

/// Each of these failed to compile (or warned, under the lints below)
/// before: an error type from a `macro_rules!` fragment, `#[expect]` and
/// `#[deprecated]` on steps, `unused_qualifications`, `self: &Self`.
#[deny(unused_qualifications)]
pub mod once_refused {
    use pipeline_core::prelude::*;

    macro_rules! fallible_step {
        ($name:ident, $err:ty) => {
            /// Positive numbers only.
            #[step]
            pub fn $name(x: i64) -> Result<i64, $err> {
                if x > 0 {
                    Ok(x)
                } else {
                    Err("negative".into())
                }
            }
        };
    }
    fallible_step!(checked, String);

    macro_rules! fallible_model {
        ($name:ident, $err:ty) => {
            /// Adds its `k`; refuses a zero `k` and a negative input.
            #[derive(Debug)]
            pub struct $name {
                k: i64,
            }
            #[step]
            impl $name {
                /// Refuses `k == 0`.
                pub fn new(k: i64) -> Result<Self, $err> {
                    if k == 0 {
                        Err("zero".into())
                    } else {
                        Ok(Self { k })
                    }
                }
                /// Adds `k`; refuses negatives.
                pub fn call(&self, x: i64) -> Result<i64, $err> {
                    if x < 0 {
                        Err("negative".into())
                    } else {
                        Ok(x + self.k)
                    }
                }
            }
        };
    }
    fallible_model!(Adder, String);

    /// The expectation is about the body (`x` is unused there).
    #[step]
    #[expect(unused_variables)]
    pub fn second(x: i64, y: i64) -> i64 {
        y
    }

    /// Deprecated: callers are warned, the definition is not.
    #[step]
    #[deprecated(note = "use `checked`")]
    pub fn old(x: i64) -> i64 {
        x + 2
    }

    /// A deprecated model type.
    #[deprecated(note = "use `Adder`")]
    #[derive(Debug)]
    pub struct Legacy;

    #[step]
    #[allow(
        deprecated,
        clippy::needless_arbitrary_self_type,
        clippy::new_without_default
    )]
    impl Legacy {
        /// Builds it.
        pub fn new() -> Self {
            Legacy
        }
        /// Triples.
        pub fn call(self: &Self, x: i64) -> i64 {
            x * 3
        }
    }

    /// A lint setting on a parameter, under a `cfg_attr`.
    #[step]
    pub fn bump(#[cfg_attr(test, allow(unused_mut))] mut x: i64) -> i64 {
        x += 1;
        x
    }

    /// `self: &mut Self`, written out.
    #[derive(Debug)]
    pub struct Counter(i64);

    #[step]
    #[allow(clippy::needless_arbitrary_self_type, clippy::new_without_default)]
    impl Counter {
        /// Starts at zero.
        pub fn new() -> Self {
            Counter(0)
        }
        /// Counts calls.
        #[deprecated(note = "just to check the attribute")]
        pub fn call(self: &mut Self, x: i64) -> i64 {
            self.0 += 1;
            x + self.0
        }
    }
}

#[test]
#[allow(deprecated)]
fn shapes_once_refused_compile_and_answer() {
    use once_refused::*;
    let p = up(checked(Input::new()));
    assert_eq!(p.call(3).unwrap(), 3);
    let err = p.call(-1).unwrap_err();
    assert!(err.to_string().contains("checked"), "{err}");
    let p = up(Adder::bind(10, Input::new()));
    assert_eq!(p.call(1).unwrap(), 11);
    assert!(p.call(-1).is_err());
    assert!(Adder::bind(0, Input::<i64>::new()).deploy().is_err());
    let x = Input::<i64>::new();
    let p = up(second(x.clone(), x));
    assert_eq!(p.call(4).unwrap(), 4);
    let p = up(old(Legacy::bind(Input::new())));
    assert_eq!(p.call(2).unwrap(), 8);
    assert_eq!(up(bump(Input::new())).call(1).unwrap(), 2);
    let p = Counter::bind(Input::<i64>::new())
        .deploy_with(DeployOptions::local())
        .unwrap();
    assert_eq!(p.call(10).unwrap(), 11);
    assert_eq!(p.call(10).unwrap(), 12);
}
