//! The drawing of one deployed graph, as SVG whose nodes carry the names
//! and the empty figure slots the page's script fills in.
//!
//! Two ways to place the nodes:
//! - `layout-rs` (a Sugiyama-style layered layout with crossing reduction
//!   and edges routed around nodes, as Graphviz's `dot`) for graphs whose
//!   edges carry no label and whose paths are few: that crate checks its
//!   graph after each edge by walking every path, so its time doubles with
//!   each diamond stacked on another (28 s for 25 residual blocks,
//!   measured), it draws a labelled edge's text as a node of its own, and
//!   it failed an assertion on 0.8% of random graphs with routes;
//! - [`layers`] here, for all others and whenever layout-rs panics:
//!   longest-path layers, one barycenter pass to order each layer, curved
//!   edges; linear in the graph's size.

use std::fmt::Write as _;

use layout::core::base::Orientation;
use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::{Point, Position};
use layout::core::style::StyleAttr;
use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
use layout::topo::layout::VisualGraph;

use crate::{Graph, GraphNode, NodeKind};

/// A step node's card, in pixels.
const STEP: (f64, f64) = (250., 112.);
/// Any other node (input, gather, route, each, collect).
const OTHER: (f64, f64) = (96., 34.);
/// Room the layout keeps around each node.
const HALO: f64 = 22.;
/// Room around the drawing.
const MARGIN: f64 = 12.;

/// What the layout engine drew, in its coordinates.
#[derive(Default)]
struct Recorder {
    /// Node index (from the element's properties) and its top-left corner.
    boxes: Vec<(usize, Point)>,
    /// Each edge's path (layout-rs' pairs: the first is the exit vector,
    /// the rest entry vectors of a cubic Bézier chain) and its label.
    edges: Vec<(Vec<(Point, Point)>, String)>,
}

impl RenderBackend for Recorder {
    fn draw_rect(
        &mut self,
        xy: Point,
        _size: Point,
        _look: &StyleAttr,
        properties: Option<String>,
        _clip: Option<ClipHandle>,
    ) {
        if let Some(index) = properties.and_then(|p| p.parse().ok()) {
            self.boxes.push((index, xy));
        }
    }

    fn draw_line(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    fn draw_circle(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    fn draw_text(&mut self, _: Point, _: &str, _: &StyleAttr) {}

    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        _dashed: bool,
        _head: (bool, bool),
        _look: &StyleAttr,
        _properties: Option<String>,
        text: &str,
    ) {
        if path.len() >= 2 {
            self.edges.push((path.to_vec(), text.to_string()));
        }
    }

    fn create_clip(&mut self, _: Point, _: Point, _: usize) -> ClipHandle {
        0
    }
}

/// Escapes text for HTML and SVG (element content and quoted attributes).
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The nodes in a topological order (Kahn's); a node on a cycle (which a
/// graph built from typed nodes cannot have) comes last.
fn topological(nodes: &[GraphNode]) -> Vec<usize> {
    let mut waiting: Vec<usize> = nodes.iter().map(|n| n.inputs.len()).collect();
    let mut consumers = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for (from, _) in &n.inputs {
            if let Some(c) = consumers.get_mut(*from) {
                c.push(i);
            } else {
                waiting[i] -= 1; // an input outside the graph: none
            }
        }
    }
    let mut order: Vec<usize> = (0..nodes.len()).filter(|&i| waiting[i] == 0).collect();
    let mut next = 0;
    while next < order.len() {
        for &c in &consumers[order[next]] {
            waiting[c] -= 1;
            if waiting[c] == 0 {
                order.push(c);
            }
        }
        next += 1;
    }
    if order.len() < nodes.len() {
        let mut placed = vec![false; nodes.len()];
        for &i in &order {
            placed[i] = true;
        }
        order.extend((0..nodes.len()).filter(|&i| !placed[i]));
    }
    order
}

/// How many paths start at each node, summed (saturating): what layout-rs'
/// per-edge check walks.
fn path_work(nodes: &[GraphNode], order: &[usize]) -> u64 {
    let mut paths = vec![1u64; nodes.len()];
    for &i in order.iter().rev() {
        for (from, _) in &nodes[i].inputs {
            if let Some(p) = paths.get(*from).copied() {
                paths[*from] = p.saturating_add(paths[i]);
            }
        }
    }
    paths.iter().fold(0u64, |a, &p| a.saturating_add(p))
}

/// Above this [`path_work`], layout-rs is not used (about 10 ms of its
/// time on this project's 2-core machine).
const PATH_BUDGET: u64 = 5_000;

/// The layered drawing: each node one layer below its deepest input;
/// each layer ordered by the mean position of its nodes' inputs, centred.
fn layers(nodes: &[GraphNode], order: &[usize]) -> Recorder {
    let mut layer = vec![0usize; nodes.len()];
    for &i in order {
        layer[i] = nodes[i]
            .inputs
            .iter()
            .filter_map(|(from, _)| layer.get(*from).map(|l| l + 1))
            .max()
            .unwrap_or(0);
    }
    let depth = layer.iter().copied().max().map_or(0, |d| d + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for &i in order {
        rows[layer[i]].push(i);
    }
    let gap = 2. * HALO;
    let width = |row: &[usize]| {
        row.iter().map(|&i| size_of(&nodes[i].kind).0).sum::<f64>()
            + gap * row.len().saturating_sub(1) as f64
    };
    // Order each layer by its nodes' inputs' mean centre (one pass, top
    // down), then centre every layer on the widest.
    let mut centre = vec![0f64; nodes.len()];
    for row in &mut rows {
        let key = |i: &usize| {
            let xs: Vec<f64> = nodes[*i]
                .inputs
                .iter()
                .filter_map(|(from, _)| centre.get(*from).copied())
                .collect();
            if xs.is_empty() {
                *i as f64
            } else {
                xs.iter().sum::<f64>() / xs.len() as f64
            }
        };
        let mut keyed: Vec<(f64, usize)> = row.iter().map(|i| (key(i), *i)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        *row = keyed.into_iter().map(|(_, i)| i).collect();
        let mut x = -width(row) / 2.;
        for &i in row.iter() {
            let w = size_of(&nodes[i].kind).0;
            centre[i] = x + w / 2.;
            x += w + gap;
        }
    }
    let mut drawn = Recorder::default();
    let mut at = vec![(Point::zero(), 0., 0.); nodes.len()];
    let mut y = 0.;
    for row in &rows {
        let height = row
            .iter()
            .map(|&i| size_of(&nodes[i].kind).1)
            .fold(0., f64::max);
        for &i in row {
            let (w, h) = size_of(&nodes[i].kind);
            let xy = Point::new(centre[i] - w / 2., y + (height - h) / 2.);
            drawn.boxes.push((i, xy));
            at[i] = (xy, w, h);
        }
        y += height + gap;
    }
    for (i, n) in nodes.iter().enumerate() {
        for (from, label) in &n.inputs {
            let Some(&(a, aw, ah)) = at.get(*from) else {
                continue;
            };
            let (b, bw, _) = at[i];
            let start = Point::new(a.x + aw / 2., a.y + ah);
            let end = Point::new(b.x + bw / 2., b.y);
            let bend = ((end.y - start.y) / 2.).max(HALO);
            drawn.edges.push((
                vec![
                    (start, Point::new(start.x, start.y + bend)),
                    (Point::new(end.x, end.y - bend), end),
                ],
                label.clone().unwrap_or_default(),
            ));
        }
    }
    drawn
}

/// layout-rs' drawing (see the module's docs for when it is used).
fn with_layout_rs(nodes: &[GraphNode]) -> Recorder {
    let mut vg = VisualGraph::new(Orientation::TopToBottom);
    let handles: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (w, h) = size_of(&n.kind);
            // The label sizes nothing (the size is given): keep it empty.
            let mut element = Element::create_with_properties(
                ShapeKind::new_box(""),
                StyleAttr::simple(),
                Orientation::TopToBottom,
                Point::new(w, h),
                i.to_string(),
            );
            // Less room around each node than layout-rs' default 60 px.
            element.pos = Position::new(
                Point::zero(),
                Point::new(w, h),
                Point::zero(),
                Point::splat(HALO),
            );
            vg.add_node(element)
        })
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        for (from, _) in &n.inputs {
            if let Some(&h) = handles.get(*from) {
                vg.add_edge(Arrow::simple(""), h, handles[i]);
            }
        }
    }
    let mut drawn = Recorder::default();
    vg.do_it(false, false, false, &mut drawn);
    drawn
}

/// At most `max` characters of `text`, with an ellipsis when cut.
fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max - 1).collect();
        cut.push('…');
        cut
    }
}

fn size_of(kind: &NodeKind) -> (f64, f64) {
    match kind {
        NodeKind::Step { .. } => STEP,
        _ => OTHER,
    }
}

/// The SVG of `graph`, top to bottom. `route` tells this route's ids apart
/// from the other routes' on the same page. Step nodes are `<g
/// class="node step" data-node="LABEL">` with text slots `data-f="meta"`,
/// `rate`, `latency`, `load` and `badge` for the script to fill.
pub(super) fn svg(route: usize, graph: &Graph) -> String {
    let nodes = graph.nodes();
    let order = topological(nodes);
    let labelled = nodes
        .iter()
        .any(|n| n.inputs.iter().any(|(_, label)| label.is_some()));
    let drawn = if labelled || path_work(nodes, &order) > PATH_BUDGET {
        layers(nodes, &order)
    } else {
        // Should layout-rs fail one of its assertions, the page still
        // comes, drawn by `layers`.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| with_layout_rs(nodes)))
            .unwrap_or_else(|_| {
                tracing::warn!("layout-rs could not lay out a graph; drawn in layers instead");
                layers(nodes, &order)
            })
    };

    // The drawing's extent, to set the view box.
    let (mut min, mut max) = (Point::splat(f64::MAX), Point::splat(f64::MIN));
    let mut grow = |p: Point| {
        min = Point::new(min.x.min(p.x), min.y.min(p.y));
        max = Point::new(max.x.max(p.x), max.y.max(p.y));
    };
    for &(i, xy) in &drawn.boxes {
        let (w, h) = size_of(&nodes[i].kind);
        grow(xy);
        grow(xy.add(Point::new(w, h)));
    }
    for (path, _) in &drawn.edges {
        for (a, b) in path {
            grow(*a);
            grow(*b);
        }
    }
    if drawn.boxes.is_empty() {
        (min, max) = (Point::zero(), Point::splat(1.));
    }
    // (The top row's badges stand 16 px above it.)
    let (x0, y0) = (min.x - MARGIN, min.y - MARGIN - 16.);
    let (w, h) = (
        max.x - min.x + 2. * MARGIN,
        max.y - min.y + 2. * MARGIN + 16.,
    );

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="graph" xmlns="http://www.w3.org/2000/svg" viewBox="{x0:.0} {y0:.0} {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}" role="img" aria-label="the graph of this route">"#
    );
    let _ = write!(
        out,
        r#"<defs><marker id="head{route}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="head"/></marker></defs>"#
    );
    for (k, (path, label)) in drawn.edges.iter().enumerate() {
        let mut d = format!(
            "M{:.1} {:.1} C{:.1} {:.1},{:.1} {:.1},{:.1} {:.1}",
            path[0].0.x,
            path[0].0.y,
            path[0].1.x,
            path[0].1.y,
            path[1].0.x,
            path[1].0.y,
            path[1].1.x,
            path[1].1.y
        );
        for (a, b) in &path[2..] {
            let _ = write!(d, " S{:.1} {:.1},{:.1} {:.1}", a.x, a.y, b.x, b.y);
        }
        let _ = write!(
            out,
            r#"<path id="e{route}-{k}" class="edge" d="{d}" marker-end="url(#head{route})"/>"#
        );
        if !label.is_empty() {
            let _ = write!(
                out,
                r##"<text class="edge-label"><title>{}</title><textPath href="#e{route}-{k}" startOffset="50%" text-anchor="middle">{}</textPath></text>"##,
                escape(label),
                escape(&short(label, 24))
            );
        }
    }
    for &(i, xy) in &drawn.boxes {
        let n = &nodes[i];
        let (w, h) = size_of(&n.kind);
        let label = escape(&n.label);
        let output = escape(n.output);
        match n.kind {
            NodeKind::Step { .. } => {
                // The badge (degraded, overloaded, errors) sits above the
                // card's top right corner, in the gap between layers.
                let _ = write!(
                    out,
                    r#"<g class="node step" data-node="{label}" transform="translate({:.1},{:.1})"><title>{label} -&gt; {output}</title><rect width="{w}" height="{h}" rx="7"/><text x="10" y="19" class="name">{}</text><text x="{:.0}" y="-5" class="badge" data-f="badge" text-anchor="end"></text><text x="10" y="38" class="meta" data-f="meta"></text><text x="10" y="58" data-f="rate">waiting for figures</text><text x="10" y="77" data-f="latency"></text><text x="10" y="96" data-f="load"></text></g>"#,
                    xy.x,
                    xy.y,
                    escape(&short(&n.label, 30)),
                    w - 4.
                );
            }
            _ => {
                let _ = write!(
                    out,
                    r#"<g class="node other" data-node="{label}" transform="translate({:.1},{:.1})"><title>{label} -&gt; {output}</title><rect width="{w}" height="{h}" rx="17"/><text x="{:.0}" y="22" text-anchor="middle">{}</text></g>"#,
                    xy.x,
                    xy.y,
                    w / 2.,
                    escape(&short(&n.label, 12))
                );
            }
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_core::prelude::*;

    #[step]
    fn split(x: i64) -> i64 {
        x
    }
    #[step]
    fn left(x: i64) -> i64 {
        x
    }
    #[step]
    fn right(x: i64) -> i64 {
        x
    }
    #[step]
    fn plus(a: i64, b: i64) -> i64 {
        a + b
    }
    #[step]
    fn join(xs: Vec<i64>) -> i64 {
        xs.into_iter().sum()
    }

    fn diamond() -> Graph {
        let s = split(Input::<i64>::new()).shared();
        join([left(s.clone()).boxed(), right(s).boxed()]).graph()
    }

    /// Each node's `translate(x,y)` in the SVG, by name.
    fn placed(svg: &str) -> Vec<(String, f64, f64)> {
        svg.split("data-node=\"")
            .skip(1)
            .map(|rest| {
                let name = rest[..rest.find('"').unwrap()].to_string();
                let t = &rest[rest.find("translate(").unwrap() + 10..];
                let (x, y) = t[..t.find(')').unwrap()].split_once(',').unwrap();
                (name, x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn every_node_is_drawn_once_and_each_layer_below_its_inputs() {
        let graph = diamond();
        let svg = svg(0, &graph);
        let nodes = placed(&svg);
        assert_eq!(nodes.len(), graph.nodes().len(), "{svg}");
        let y = |name: &str| nodes.iter().find(|n| n.0 == name).unwrap().2;
        assert!(y("input") < y("split"));
        assert!(y("split") < y("left") && y("split") < y("right"));
        assert_eq!(y("left"), y("right"), "siblings share a layer");
        assert!(y("left") < y("join"));
        let edges = graph.nodes().iter().map(|n| n.inputs.len()).sum::<usize>();
        assert_eq!(svg.matches("class=\"edge\"").count(), edges);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn the_layered_drawing_places_each_node_below_its_inputs_and_draws_every_edge() {
        let graph = diamond();
        let nodes = graph.nodes();
        let order = topological(nodes);
        let drawn = layers(nodes, &order);
        assert_eq!(drawn.boxes.len(), nodes.len());
        let y = |i: usize| drawn.boxes.iter().find(|b| b.0 == i).unwrap().1.y;
        for (i, n) in nodes.iter().enumerate() {
            for (from, _) in &n.inputs {
                assert!(y(*from) < y(i), "{} above {}", nodes[*from].label, n.label);
            }
        }
        let edges = nodes.iter().map(|n| n.inputs.len()).sum::<usize>();
        assert_eq!(drawn.edges.len(), edges);
    }

    #[test]
    fn stacked_diamonds_are_not_given_to_layout_rs_and_draw_at_once() {
        // Each residual block doubles the paths layout-rs would walk per
        // edge: 25 of them took it 28 s.
        let mut node: pipeline_core::Node<i64, i64> = Input::<i64>::new().boxed();
        for i in 0..40 {
            let x = node.shared();
            node = plus(left(x.clone()).named(&format!("block{i}")), x)
                .named(&format!("skip{i}"))
                .boxed();
        }
        let graph = node.graph();
        let order = topological(graph.nodes());
        assert!(path_work(graph.nodes(), &order) > PATH_BUDGET);
        let svg = svg(0, &graph);
        assert_eq!(svg.matches("class=\"node step\"").count(), 80);
    }

    #[test]
    fn labelled_edges_are_drawn_with_their_labels_cut_to_fit() {
        let long = "k".repeat(100);
        let x = Input::<i64>::new();
        let graph = route(split(x))
            .branch(0, left(Input::<i64>::new()).boxed())
            .branch(1, right(Input::<i64>::new()).boxed())
            .graph();
        let svg = svg(0, &graph);
        assert!(svg.contains("class=\"edge-label\""), "{svg}");
        assert_eq!(short(&long, 24).chars().count(), 24);
        assert!(short(&long, 24).ends_with('…'));
    }

    #[test]
    fn a_name_too_long_for_its_card_is_cut_and_kept_whole_in_its_title() {
        let name = "sentence-transformers/all-MiniLM-L6-v2 embed";
        let graph = left(Input::<i64>::new()).named(name).graph();
        let svg = svg(0, &graph);
        assert!(svg.contains(&format!("<title>{} -&gt;", escape(name))));
        assert!(svg.contains(&format!(">{}</text>", escape(&short(name, 30)))));
    }
}
