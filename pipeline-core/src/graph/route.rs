//! Per-request routing: a key node picks one branch; only that branch runs.

use std::any::type_name;
use std::fmt::{self, Debug, Formatter};

use super::describe::{GraphBuilder, NodeId, NodeKind};
use super::lower::Lowering;
use super::{edge, Node, Produces, Upstream};
use crate::error::{DeployError, PipelineError};
use crate::eval::{CallCx, DynEval, Eval};

/// Starts a route on `key`: a node whose output picks the branch to run.
///
/// Each call evaluates `key`, then runs only the branch registered for that
/// key (or the `otherwise` branch). All branches must produce one type,
/// checked at compile time.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[derive(Clone)]
/// struct Req { model: &'static str, x: i64 }
///
/// #[step]
/// fn pick(r: Req) -> &'static str { r.model }
/// #[step]
/// fn small(r: Req) -> i64 { r.x + 1 }
/// #[step]
/// fn large(r: Req) -> i64 { r.x * 1000 }
///
/// let req = Input::<Req>::new().shared();
/// let p = route(pick(req.clone()))
///     .branch("small", small(req.clone()))
///     .branch("large", large(req))
///     .deploy()?;
/// assert_eq!(p.call(Req { model: "small", x: 2 })?, 3);
/// assert_eq!(p.call(Req { model: "large", x: 2 })?, 2000);
/// assert!(p.call(Req { model: "huge", x: 2 }).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn route<K, N>(key: K) -> RouteStart<N>
where
    // `N` rather than the projection `K::Node`: for a `K` that is no node
    // the one error is then this bound's, at the argument, and `N` is left
    // unknown, which rustc does not report again (a projection in the
    // return type would add an error at the call).
    K: RouteOn<Node = N>,
    N: Upstream,
    // Through `K` (not `N::Output`): rustc then points at the argument.
    <K::Node as Upstream>::Output: RouteKey,
{
    RouteStart {
        key: key.node(),
        keys: KeyFns {
            eq: <N::Output as PartialEq>::eq,
            fmt: <N::Output as Debug>::fmt,
        },
    }
}

/// What [`route`] takes: any node. A trait of its own so that `route`'s
/// return type goes through it: given something that is no node, the one
/// error is at `route(..)`, and the `.branch(..)` calls chained on it add
/// none (their receiver's type is unknown, not `RouteStart<bool>`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a pipeline node",
    label = "not a node: `route` takes the node whose output picks the branch",
    note = "route on a step's node, e.g. `route(pick(input.clone()))`; a value known when the graph is built needs no route: pick the branch in Rust"
)]
pub trait RouteOn {
    /// The key node.
    type Node: Upstream;
    /// Itself.
    fn node(self) -> Self::Node;
}

/// `RouteOn` for node types, one impl each (a generated step node has its
/// own, from the macro). Not one blanket `impl<K: Upstream>`: a blanket
/// impl matches `bool` too and only its bound fails, so `route(flag)`
/// would still have the type `RouteStart<bool>` and each `.branch` on it
/// would fail again; with no impl matching, the type is unknown after the
/// one error, and rustc reports nothing more.
macro_rules! route_on {
    ($([$($gen:tt)*] $ty:ty),* $(,)?) => {$(
        #[diagnostic::do_not_recommend]
        impl<$($gen)*> RouteOn for $ty
        where
            $ty: Upstream,
        {
            type Node = Self;
            fn node(self) -> Self {
                self
            }
        }
    )*};
}

route_on!(
    [T] super::Input<T>,
    [I, O] super::Node<I, O>,
    [I, O] super::Shared<I, O>,
    [I, O] super::rejected::Rejected<I, O>,
    [K: Upstream, O] Route<K, O>,
    [S: crate::step::StepFn, E] super::StepNode<S, E>,
    [U] Vec<U>,
    [U, const N: usize] [U; N],
    [T] super::Item<T>,
    [U, N] super::MapEach<U, N>,
    [U] super::Collect<U>,
);

/// What [`route`] needs of its key's type: it compares keys (`PartialEq`)
/// and names them in errors and graphs (`Debug`). Implemented for every such
/// type; named so that a key without them is one error, at `route(..)`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a route key: `route` compares keys and names them in errors, so it needs `PartialEq + Debug + Sync`",
    label = "this node's output is the route key",
    note = "derive them on the key type: `#[derive(PartialEq, Debug)]`"
)]
pub trait RouteKey: PartialEq + Debug + Sync {}

#[diagnostic::do_not_recommend]
impl<T: PartialEq + Debug + Sync> RouteKey for T {}

/// What a branch's key may be written as: the route key's own type, or a
/// `&str` for a `String` key (`.branch("en", english(x))`), as a match arm
/// would take a string literal.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step]
/// fn language(text: String) -> String {
///     if text.starts_with("le ") { "fr".to_string() } else { "en".to_string() }
/// }
/// #[step]
/// fn english(text: String) -> usize { text.len() }
/// #[step]
/// fn french(text: String) -> usize { text.len() * 10 }
///
/// let text = Input::<String>::new().shared();
/// let p = route(language(text.clone()))
///     .branch("en", english(text.clone()))
///     .branch("fr", french(text))
///     .deploy()?;
/// assert_eq!(p.call("le chat".to_string())?, 70);
/// assert_eq!(p.call("a cat".to_string())?, 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a key of this route: its key node produces `{K}`",
    label = "a `{K}` key",
    note = "a branch's key has the type the route's key node produces (or is a `&str` for a `String` key)"
)]
pub trait BranchKey<K> {
    /// The key as the route's key type.
    fn into_key(self) -> K;
}

impl<K> BranchKey<K> for K {
    #[inline]
    fn into_key(self) -> K {
        self
    }
}

impl BranchKey<String> for &str {
    fn into_key(self) -> String {
        self.to_owned()
    }
}

/// The key type's `eq` and `fmt`, taken where [`RouteKey`] is known
/// ([`route`]), so that no later method repeats the bound.
struct KeyFns<T> {
    eq: fn(&T, &T) -> bool,
    fmt: fn(&T, &mut Formatter<'_>) -> fmt::Result,
}

impl<T> Clone for KeyFns<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for KeyFns<T> {}

/// A key printed with the key type's `Debug`.
struct Shown<'a, T>(&'a T, KeyFns<T>);

impl<T> Debug for Shown<'_, T> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        (self.1.fmt)(self.0, f)
    }
}

impl<T> KeyFns<T> {
    fn show(self, key: &T) -> String {
        format!("{:?}", Shown(key, self))
    }
}

/// A route with no branch yet; [`branch`](RouteStart::branch) fixes the
/// output type. See [`route`] for an example.
pub struct RouteStart<K: Upstream> {
    key: K,
    keys: KeyFns<K::Output>,
}

impl<K: Upstream> Debug for RouteStart<K> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "RouteStart<{}>", type_name::<K>())
    }
}

impl<K> RouteStart<K>
where
    K: Upstream,
    K::Output: Sync,
{
    /// Runs `node` when the key equals `key`.
    pub fn branch<Q, B>(self, key: Q, node: B) -> Route<K, B::Output>
    where
        Q: BranchKey<K::Output>,
        B: Upstream<Input = K::Input>,
    {
        Route {
            key: self.key,
            keys: self.keys,
            branches: vec![(key.into_key(), node.boxed())],
            otherwise: None,
            otherwise_twice: false,
        }
    }
}

/// One branch: its key and its node.
type Branch<K, O> = (<K as Upstream>::Output, Node<<K as Upstream>::Input, O>);

/// A route node: see [`route`] for an example.
pub struct Route<K: Upstream, O> {
    key: K,
    keys: KeyFns<K::Output>,
    branches: Vec<Branch<K, O>>,
    otherwise: Option<Node<K::Input, O>>,
    /// `.otherwise` was given more than once: refused at deploy, as two
    /// branches for one key are (the later one silently replacing the
    /// first would hide a copy-paste slip).
    otherwise_twice: bool,
}

impl<K: Upstream, O> Debug for Route<K, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Route<{}, {}> ({} branches)",
            type_name::<K>(),
            type_name::<O>(),
            self.branches.len()
        )
    }
}

impl<K, O> Route<K, O>
where
    K: Upstream,
    K::Output: Sync,
    O: Send + 'static,
{
    /// Runs `node` when the key equals `key`. It must produce what the first
    /// branch produces.
    pub fn branch<Q, B>(mut self, key: Q, node: B) -> Self
    where
        Q: BranchKey<K::Output>,
        B: Produces<O> + Upstream<Input = K::Input>,
    {
        self.branches.push((key.into_key(), edge::<O, B>(node)));
        self
    }

    /// Runs `node` when no branch matches (without it, such a call fails with
    /// [`PipelineError::NoBranch`]).
    pub fn otherwise<B>(mut self, node: B) -> Self
    where
        B: Produces<O> + Upstream<Input = K::Input>,
    {
        self.otherwise_twice |= self.otherwise.is_some();
        self.otherwise = Some(edge::<O, B>(node));
        self
    }
}

impl<K, O> Produces<O> for Route<K, O>
where
    K: Upstream,
    K::Output: Sync,
    O: Send + 'static,
{
    #[inline(always)]
    fn cast(output: O) -> O {
        output
    }
}

impl<K, O> Upstream for Route<K, O>
where
    K: Upstream,
    K::Output: Sync,
    O: Send + 'static,
{
    type Input = K::Input;
    type Output = O;
    type Eval = RouteEval<K::Eval, O>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        let key = self.key.lower(lowering)?;
        let key_id = lowering.last_id()?;
        // Errors name the route by its key node (`pick`), so that two
        // routes of one graph read apart; the graph's node stays `route`.
        let label = lowering
            .label_of(key_id)
            .map_or(ROUTE, super::names::intern);
        let keys = self.keys;
        if self.otherwise_twice {
            return Err(DeployError::DuplicateOtherwise {
                route: label.to_string(),
            });
        }
        for (i, (a, _)) in self.branches.iter().enumerate() {
            if self.branches[..i].iter().any(|(b, _)| (keys.eq)(b, a)) {
                return Err(DeployError::DuplicateBranch {
                    route: label.to_string(),
                    key: keys.show(a),
                });
            }
        }
        let mut inputs = vec![(key_id, Some("key".to_string()))];
        let mut branches = Vec::with_capacity(self.branches.len());
        for (k, node) in self.branches {
            let eval = node.lower(lowering)?;
            inputs.push((lowering.last_id()?, Some(keys.show(&k))));
            branches.push((k, eval));
        }
        let otherwise = match self.otherwise {
            Some(node) => {
                let eval = node.lower(lowering)?;
                inputs.push((lowering.last_id()?, Some("otherwise".to_string())));
                Some(eval)
            }
            None => None,
        };
        lowering.push(ROUTE, NodeKind::Route, type_name::<O>(), inputs);
        Ok(RouteEval {
            label,
            key,
            keys,
            branches,
            otherwise,
        })
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        let mut inputs = vec![(self.key.describe(graph), Some("key".to_string()))];
        for (k, node) in &self.branches {
            inputs.push((node.describe(graph), Some(self.keys.show(k))));
        }
        if let Some(node) = &self.otherwise {
            inputs.push((node.describe(graph), Some("otherwise".to_string())));
        }
        graph.push(ROUTE, NodeKind::Route, type_name::<O>(), inputs)
    }
}

/// A route's node in graphs.
const ROUTE: &str = "route";

#[doc(hidden)]
pub struct RouteEval<E: Eval, O> {
    /// The key node's name.
    label: &'static str,
    key: E,
    keys: KeyFns<E::Output>,
    branches: Vec<(E::Output, Box<dyn DynEval<O>>)>,
    otherwise: Option<Box<dyn DynEval<O>>>,
}

impl<E: Eval, O> Debug for RouteEval<E, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteEval")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl<E, O> Eval for RouteEval<E, O>
where
    E: Eval,
    E::Output: Sync,
    O: Send + 'static,
{
    type Output = O;
    async fn eval(&self, cx: &CallCx<'_>) -> Result<O, PipelineError> {
        let key = self.key.eval(cx).await?;
        // The key type's `PartialEq` and `Debug` are the user's code.
        let branch = PipelineError::caught(self.label, || {
            self.branches
                .iter()
                .find(|(k, _)| (self.keys.eq)(k, &key))
                .map(|(_, b)| b)
                .or(self.otherwise.as_ref())
                .ok_or_else(|| PipelineError::NoBranch {
                    route: self.label.to_string(),
                    key: self.keys.show(&key),
                })
        })??;
        branch.eval_boxed(cx).await
    }
}
