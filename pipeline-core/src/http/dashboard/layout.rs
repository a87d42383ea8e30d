//! The drawing of one deployed graph: `layout-rs` places the nodes and
//! routes the edges (a Sugiyama-style layered layout, as Graphviz's `dot`
//! does), and this file writes the SVG itself, so that every node carries
//! the ids and the empty figure slots the page's script fills in.

use std::fmt::Write as _;

use layout::core::base::Orientation;
use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::{Point, Position};
use layout::core::style::StyleAttr;
use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
use layout::topo::layout::VisualGraph;

use crate::{Graph, NodeKind};

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

/// The fallback drawing: the nodes one under the other (they are listed
/// inputs first), each edge a straight line.
fn column(nodes: &[crate::GraphNode]) -> Recorder {
    let mut drawn = Recorder::default();
    let mut y = 0.;
    let mut at = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let (w, h) = size_of(&n.kind);
        let xy = Point::new((STEP.0 - w) / 2., y);
        drawn.boxes.push((i, xy));
        at.push((xy, w, h));
        y += h + 2. * HALO;
    }
    for (i, n) in nodes.iter().enumerate() {
        for (from, label) in &n.inputs {
            let (Some(&(a, aw, ah)), Some(&(b, bw, _))) = (at.get(*from), at.get(i)) else {
                continue;
            };
            let start = Point::new(a.x + aw / 2., a.y + ah);
            let end = Point::new(b.x + bw / 2., b.y);
            drawn.edges.push((
                vec![(start, start), (end, end)],
                label.clone().unwrap_or_default(),
            ));
        }
    }
    drawn
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
        for (from, label) in &n.inputs {
            let arrow = Arrow::simple(label.as_deref().unwrap_or(""));
            vg.add_edge(arrow, handles[*from], handles[i]);
        }
    }
    let mut drawn = Recorder::default();
    // layout-rs asserts its own invariants: should one fail for some graph
    // shape, the page still comes, with the nodes in a column.
    let placed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        vg.do_it(false, false, false, &mut drawn);
    }));
    if placed.is_err() {
        tracing::warn!("the dashboard could not lay out a graph; drawing its nodes in a column");
        drawn = column(nodes);
    }

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
    let (x0, y0) = (min.x - MARGIN, min.y - MARGIN);
    let (w, h) = (max.x - min.x + 2. * MARGIN, max.y - min.y + 2. * MARGIN);

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
                r##"<text class="edge-label"><textPath href="#e{route}-{k}" startOffset="50%" text-anchor="middle">{}</textPath></text>"##,
                escape(label)
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
                let _ = write!(
                    out,
                    r#"<g class="node step" data-node="{label}" transform="translate({:.1},{:.1})"><title>{label} -&gt; {output}</title><rect width="{w}" height="{h}" rx="7"/><text x="10" y="19" class="name">{label}</text><text x="{:.0}" y="19" class="badge" data-f="badge" text-anchor="end"></text><text x="10" y="38" class="meta" data-f="meta"></text><text x="10" y="58" data-f="rate">waiting for figures</text><text x="10" y="77" data-f="latency"></text><text x="10" y="96" data-f="load"></text></g>"#,
                    xy.x,
                    xy.y,
                    w - 10.
                );
            }
            _ => {
                let _ = write!(
                    out,
                    r#"<g class="node other" data-node="{label}" transform="translate({:.1},{:.1})"><title>{label} -&gt; {output}</title><rect width="{w}" height="{h}" rx="17"/><text x="{:.0}" y="22" text-anchor="middle">{label}</text></g>"#,
                    xy.x,
                    xy.y,
                    w / 2.
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
    fn the_fallback_column_draws_every_node_and_edge() {
        let graph = diamond();
        let drawn = column(graph.nodes());
        assert_eq!(drawn.boxes.len(), graph.nodes().len());
        let ys: Vec<f64> = drawn.boxes.iter().map(|(_, p)| p.y).collect();
        assert!(ys.windows(2).all(|w| w[0] < w[1]), "{ys:?}");
        let edges = graph.nodes().iter().map(|n| n.inputs.len()).sum::<usize>();
        assert_eq!(drawn.edges.len(), edges);
    }
}
