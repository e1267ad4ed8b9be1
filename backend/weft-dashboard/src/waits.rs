//! The wait-for graph of locks, semaphores and queues: `/waits`, drawn by the server as
//! SVG (each chain a node linking to its page, each wait an edge labelled by its lock),
//! and its JSON mirror `/api/waits`.
//!
//! Labels and sites are the program's data: the template escapes them like any other
//! text, and the layout only computes coordinates.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use weft_telemetry::WaitsSnapshot;
use weft_telemetry::waits::{LockSnapshot, MemberSnapshot, WaitEdge};

use crate::state::DashboardState;

/// `/api/waits`: the graph with its edges spelled out.
#[derive(Debug, Serialize)]
pub struct WaitsView {
    /// Locks, their holders and waiters, and the deadlocks.
    #[serde(flatten)]
    pub graph: Arc<WaitsSnapshot>,
    /// Every waiter-to-holder edge.
    pub edges: Vec<WaitEdge>,
}

pub(crate) async fn api(State(state): State<DashboardState>) -> Json<WaitsView> {
    let graph = state.hub.deferreds().waits();
    let edges = graph.edges();
    Json(WaitsView { graph, edges })
}

/// Node size and spacing, in SVG user units.
const NODE_W: f64 = 220.0;
const NODE_H: f64 = 46.0;
/// Characters of a label or site shown in a node before it is cut (the tables below the
/// drawing show them whole).
const TEXT_MAX: usize = 30;

/// A chain (or a lock nobody holds) drawn as a box.
struct Node {
    /// The chain's id; `None` for a lock with no known holder.
    chain: Option<u64>,
    title: String,
    site: String,
    x: f64,
    y: f64,
    /// A member of a deadlock.
    deadlocked: bool,
}

impl Node {
    fn left(&self) -> String {
        num(self.x - NODE_W / 2.0)
    }
    fn top(&self) -> String {
        num(self.y - NODE_H / 2.0)
    }
    fn text_x(&self) -> String {
        num(self.x - NODE_W / 2.0 + 10.0)
    }
    fn title_y(&self) -> String {
        num(self.y - 4.0)
    }
    fn site_y(&self) -> String {
        num(self.y + 14.0)
    }
    fn class(&self) -> &'static str {
        match (self.chain.is_some(), self.deadlocked) {
            (_, true) => "node deadlocked",
            (true, false) => "node",
            (false, false) => "node lock",
        }
    }
}

/// A wait, drawn from the waiter to the holder.
struct Edge {
    path: String,
    label: String,
    label_x: String,
    label_y: String,
    lock: u64,
    deadlocked: bool,
}

#[derive(Template)]
#[template(path = "waits.html")]
struct WaitsPage {
    /// Which navigation link the layout marks as the current page.
    page: &'static str,
    width: String,
    height: String,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    locks: Vec<LockSnapshot>,
    deadlocks: Vec<Vec<MemberSnapshot>>,
}

pub(crate) async fn page(State(state): State<DashboardState>) -> Response {
    let graph = state.hub.deferreds().waits();
    crate::pages::html(&layout(&graph))
}

fn num(v: f64) -> String {
    format!("{v:.1}")
}

fn cut(s: &str) -> String {
    if s.chars().count() <= TEXT_MAX {
        return s.to_owned();
    }
    // Keep the end of a site (`file.rs:12`) and the start of a label.
    let kept: String = s.chars().take(TEXT_MAX - 1).collect();
    format!("{kept}…")
}

fn cut_site(s: &str) -> String {
    let n = s.chars().count();
    if n <= TEXT_MAX {
        return s.to_owned();
    }
    let kept: String = s.chars().skip(n - (TEXT_MAX - 1)).collect();
    format!("…{kept}")
}

/// Places the chains on a circle (a cycle reads as one) and draws each wait as a curve,
/// bent to its left so the two directions between a pair do not overlap.
fn layout(graph: &WaitsSnapshot) -> WaitsPage {
    let mut nodes = chain_nodes(graph);
    let chain_node: HashMap<u64, usize> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| Some((n.chain?, i)))
        .collect();
    // Locks nobody holds get a node of their own, so their waiters have an edge.
    let mut lock_node: HashMap<u64, usize> = HashMap::new();
    for l in graph.locks.iter().filter(|l| l.holders.is_empty()) {
        lock_node.insert(l.lock.id, nodes.len());
        nodes.push(Node {
            chain: None,
            title: cut(&l.lock.name()),
            site: cut_site(&l.lock.site),
            x: 0.0,
            y: 0.0,
            deadlocked: false,
        });
    }
    let circle = Circle::of(nodes.len());
    for (i, node) in nodes.iter_mut().enumerate() {
        (node.x, node.y) = circle.place(i);
    }
    let edges = edges(graph, &nodes, &chain_node, &lock_node);
    WaitsPage {
        page: "waits",
        width: num(2.0 * circle.cx),
        height: num(circle.cy + circle.radius + NODE_H / 2.0 + 30.0),
        nodes,
        edges,
        locks: graph.locks.clone(),
        deadlocks: graph.deadlocks.clone(),
    }
}

/// A node for each chain that holds or waits on a lock, in the order first met, not
/// placed yet.
fn chain_nodes(graph: &WaitsSnapshot) -> Vec<Node> {
    let mut seen = HashSet::new();
    graph
        .locks
        .iter()
        .flat_map(|l| l.holders.iter().chain(&l.waiters))
        .filter(|p| seen.insert(p.chain))
        .map(|p| {
            let title = match &p.label {
                Some(l) => format!("{} {l}", p.chain),
                None => format!("Deferred {}", p.chain),
            };
            let site = p
                .site
                .clone()
                .unwrap_or_else(|| format!("(ended) {}", p.at));
            Node {
                chain: Some(p.chain),
                title: cut(&title),
                site: cut_site(&site),
                x: 0.0,
                y: 0.0,
                deadlocked: graph.deadlocked(p.chain),
            }
        })
        .collect()
}

/// `count` places spread evenly on a circle, the first at the top, wide enough for the
/// boxes not to overlap.
struct Circle {
    count: usize,
    radius: f64,
    cx: f64,
    cy: f64,
}

impl Circle {
    fn of(count: usize) -> Self {
        let radius = if count <= 1 {
            0.0
        } else {
            (count as f64 * (NODE_W * 0.75) / std::f64::consts::TAU).max(NODE_W * 0.8)
        };
        Self {
            count,
            radius,
            cx: radius + NODE_W / 2.0 + 20.0,
            cy: radius + NODE_H / 2.0 + 50.0,
        }
    }

    /// The centre of the `i`-th place.
    fn place(&self, i: usize) -> (f64, f64) {
        let angle =
            -std::f64::consts::FRAC_PI_2 + i as f64 * std::f64::consts::TAU / self.count as f64;
        (
            self.cx + self.radius * angle.cos(),
            self.cy + self.radius * angle.sin(),
        )
    }
}

/// Each wait as a curve from its waiter's node to its holder's, or to its lock's when
/// nobody holds it (their indices in `nodes` by chain and by lock), labelled by the lock
/// and marked where it closes a deadlock.
fn edges(
    graph: &WaitsSnapshot,
    nodes: &[Node],
    chain_node: &HashMap<u64, usize>,
    lock_node: &HashMap<u64, usize>,
) -> Vec<Edge> {
    let names: HashMap<u64, String> = graph
        .locks
        .iter()
        .map(|l| (l.lock.id, cut(&l.lock.name())))
        .collect();
    let in_cycle = |w: u64, lock: u64| {
        graph
            .deadlocks
            .iter()
            .any(|c| c.iter().any(|m| m.chain.chain == w && m.lock.id == lock))
    };
    graph
        .edges()
        .iter()
        .map(|e| {
            let to = match e.holder {
                Some(holder) => chain_node[&holder],
                None => lock_node[&e.lock],
            };
            let (path, lx, ly) = curve(&nodes[chain_node[&e.waiter]], &nodes[to]);
            Edge {
                path,
                label: names.get(&e.lock).cloned().unwrap_or_default(),
                label_x: num(lx),
                label_y: num(ly),
                lock: e.lock,
                deadlocked: in_cycle(e.waiter, e.lock),
            }
        })
        .collect()
}

/// Where the ray from a node's centre towards `(dx, dy)` leaves its box.
fn exit(dx: f64, dy: f64) -> f64 {
    let tx = if dx == 0.0 {
        f64::INFINITY
    } else {
        (NODE_W / 2.0) / dx.abs()
    };
    let ty = if dy == 0.0 {
        f64::INFINITY
    } else {
        (NODE_H / 2.0) / dy.abs()
    };
    tx.min(ty)
}

/// The SVG path of an edge from `a` to `b`, and where its label goes: a quadratic curve
/// bent to the left of the direction of travel; a loop above the box for a chain that
/// waits on itself.
fn curve(a: &Node, b: &Node) -> (String, f64, f64) {
    if std::ptr::eq(a, b) {
        let (x0, y0) = (a.x - 30.0, a.y - NODE_H / 2.0);
        let (x1, y1) = (a.x + 30.0, a.y - NODE_H / 2.0);
        let path = format!(
            "M{} {} C{} {} {} {} {} {}",
            num(x0),
            num(y0),
            num(x0 - 20.0),
            num(y0 - 60.0),
            num(x1 + 20.0),
            num(y1 - 60.0),
            num(x1),
            num(y1)
        );
        return (path, a.x, y0 - 50.0);
    }
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len = (dx * dx + dy * dy).sqrt().max(1.0);
    let (nx, ny) = (-dy / len, dx / len);
    let bend = (len * 0.18).min(70.0);
    let (mx, my) = ((a.x + b.x) / 2.0 + nx * bend, (a.y + b.y) / 2.0 + ny * bend);
    let ts = exit(mx - a.x, my - a.y);
    let (sx, sy) = (a.x + (mx - a.x) * ts, a.y + (my - a.y) * ts);
    let te = exit(mx - b.x, my - b.y);
    let (ex, ey) = (b.x + (mx - b.x) * te, b.y + (my - b.y) * te);
    let path = format!(
        "M{} {} Q{} {} {} {}",
        num(sx),
        num(sy),
        num(mx),
        num(my),
        num(ex),
        num(ey)
    );
    let (lx, ly) = (
        0.25 * sx + 0.5 * mx + 0.25 * ex,
        0.25 * sy + 0.5 * my + 0.25 * ey,
    );
    (path, lx, ly)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft::defer::LockKind;
    use weft_telemetry::waits::{LockRef, PartySnapshot};

    fn party(chain: u64, label: &str) -> PartySnapshot {
        PartySnapshot {
            chain,
            label: Some(label.into()),
            site: Some("src/<b>main</b>.rs:3".into()),
            connection: None,
            at: "src/main.rs:9".into(),
        }
    }

    fn lock(id: u64, holder: PartySnapshot, waiter: PartySnapshot) -> LockSnapshot {
        LockSnapshot {
            lock: LockRef {
                id,
                kind: LockKind::Lock,
                label: Some(format!("<i>l{id}</i>")),
                site: "src/main.rs:1".into(),
            },
            limit: Some(1),
            holders: vec![holder],
            unrecorded_holders: 0,
            waiters: vec![waiter],
            reactor: 0,
        }
    }

    #[test]
    fn the_graph_draws_a_node_per_chain_linking_to_it_and_escapes_labels() {
        let graph = WaitsSnapshot {
            at_ms: 1,
            locks: vec![
                lock(7, party(1, "<script>x</script>"), party(2, "y")),
                lock(8, party(2, "y"), party(1, "<script>x</script>")),
            ],
            deadlocks: Vec::new(),
        };
        let html = layout(&graph).render().unwrap();
        assert!(html.contains("<svg"), "{html}");
        assert!(html.contains("href=\"/deferreds/1\""), "{html}");
        assert!(html.contains("href=\"/deferreds/2\""), "{html}");
        assert!(!html.contains("<script>x"), "labels are escaped: {html}");
        assert!(!html.contains("<i>l7"), "lock labels are escaped");
        assert!(html.contains("&#60;i&#62;l7"), "{html}");
        assert_eq!(html.matches("class=\"edge").count(), 2, "{html}");
    }
}
