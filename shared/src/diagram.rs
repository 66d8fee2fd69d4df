//! The cache-aside flow diagram as data.
//!
//! The front end draws whatever [`Diagram`] it is given and animates traces
//! by node id, so a later lab (locks, Pub/Sub, leases, a circuit breaker)
//! adds nodes and edges here instead of rewriting the animation.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// The name of a diagram node. Trace steps refer to nodes by this id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub Cow<'static, str>);

impl NodeId {
    pub const fn new(id: &'static str) -> NodeId {
        NodeId(Cow::Borrowed(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The nodes of the cache-aside read diagram (tutorial section 2 and 4.5).
pub mod nodes {
    use super::NodeId;
    /// A request for a record arrives.
    pub const REQUEST: NodeId = NodeId::new("request");
    /// `GET` the cache key from Redis.
    pub const CHECK_CACHE: NodeId = NodeId::new("check_cache");
    /// The key was there: answer from the cache.
    pub const RETURN_CACHED: NodeId = NodeId::new("return_cached");
    /// Redis failed or timed out: carry on without it.
    pub const CACHE_ERROR: NodeId = NodeId::new("cache_error");
    /// Read the row from the database.
    pub const QUERY_DATABASE: NodeId = NodeId::new("query_database");
    /// `SET` the value (or a "missing" marker) with a TTL.
    pub const STORE_IN_CACHE: NodeId = NodeId::new("store_in_cache");
    /// Answer with the value loaded from the database.
    pub const RETURN_LOADED: NodeId = NodeId::new("return_loaded");
    /// A request to change or remove a record arrives.
    pub const WRITE_REQUEST: NodeId = NodeId::new("write_request");
    /// Change the row in the database, the source of truth, first.
    pub const WRITE_DATABASE: NodeId = NodeId::new("write_database");
    /// Then deal with the cached copy, as the write strategy says.
    pub const UPDATE_CACHE: NodeId = NodeId::new("update_cache");
    /// Answer the writer.
    pub const RETURN_WRITTEN: NodeId = NodeId::new("return_written");
    /// Look in the serving instance's own in-process cache first.
    pub const NEAR_CACHE: NodeId = NodeId::new("near_cache");
    /// Tell every instance, over Redis Pub/Sub, to drop its near copy.
    pub const PUBLISH: NodeId = NodeId::new("publish");
    /// The stampede lock: take it (`SET NX PX`), wait to be handed the
    /// value, hand it over and release it.
    pub const LOCK: NodeId = NodeId::new("lock");
    /// The reader's lease against the stale-set race.
    pub const LEASE: NodeId = NodeId::new("lease");
    /// The circuit breaker around Redis: open, reads skip Redis.
    pub const BREAKER: NodeId = NodeId::new("breaker");
    /// The application instances, receiving invalidations.
    pub const INSTANCE_A: NodeId = NodeId::new("instance_a");
    pub const INSTANCE_B: NodeId = NodeId::new("instance_b");
    pub const INSTANCE_C: NodeId = NodeId::new("instance_c");

    /// The node of instance number `index` (0 for A), if the diagram has one.
    pub fn instance(index: usize) -> Option<NodeId> {
        [INSTANCE_A, INSTANCE_B, INSTANCE_C].get(index).cloned()
    }
}

/// Which part of the system a node belongs to; the UI colours nodes by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum System {
    App,
    Redis,
    Database,
}

/// An optional part of the flow: its nodes are drawn faded while the
/// sandbox does not use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Near caches and their Pub/Sub invalidation.
    Near,
    /// The stampede lock (and stale-while-revalidate's refresh lock).
    Lock,
    /// Leases against the stale-set race.
    Lease,
    /// The circuit breaker around Redis.
    Breaker,
    /// Fail-safe: an expired copy answers when the database fails.
    FailSafe,
    /// The wrong write order: the cache deleted before the database write.
    WrongOrder,
}

/// How a node is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeShape {
    /// A step that does work.
    Box,
    /// Where the flow starts or ends.
    Terminal,
}

/// One box of the diagram. Coordinates are in the diagram's own units
/// (see [`Diagram::width`] and [`Diagram::height`]); `x`/`y` is the top left.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    pub title: String,
    /// A second line, such as the command used.
    pub detail: String,
    pub system: System,
    pub shape: NodeShape,
    /// Which flow the node belongs to (0: reads, 1: writes); the narrow
    /// layout stacks flows one under the other.
    #[serde(default)]
    pub flow: u8,
    /// The optional part of the flow this node belongs to, if any.
    #[serde(default)]
    pub feature: Option<Feature>,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

impl Node {
    /// The centre of the node.
    pub fn centre(&self) -> (f64, f64) {
        (self.x + self.width / 2.0, self.y + self.height / 2.0)
    }

    /// Where the straight line from the centre towards `(tx, ty)` leaves the
    /// node's rectangle; edges start and end there, not under the box.
    pub fn border_towards(&self, tx: f64, ty: f64) -> (f64, f64) {
        let (cx, cy) = self.centre();
        let (dx, dy) = (tx - cx, ty - cy);
        if dx == 0.0 && dy == 0.0 {
            return (cx, cy);
        }
        let sx = if dx == 0.0 {
            f64::INFINITY
        } else {
            (self.width / 2.0) / dx.abs()
        };
        let sy = if dy == 0.0 {
            f64::INFINITY
        } else {
            (self.height / 2.0) / dy.abs()
        };
        let s = sx.min(sy);
        (cx + dx * s, cy + dy * s)
    }
}

/// An arrow between two nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub from: NodeId,
    pub to: NodeId,
    /// A label drawn beside the arrow (`hit`, `miss`, ...).
    pub label: String,
    /// How far the arrow bows out sideways from a straight line, in diagram
    /// units (0 for straight); used so two edges never overlap.
    pub bend: f64,
    /// The optional part of the flow this arrow belongs to, if any (it is
    /// faded while unused, like the part's nodes).
    #[serde(default)]
    pub feature: Option<Feature>,
}

/// A whole diagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diagram {
    pub width: f64,
    pub height: f64,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

impl Diagram {
    /// Looks up a node by id.
    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    /// Looks up the edge from one node to another.
    pub fn edge(&self, from: &NodeId, to: &NodeId) -> Option<&Edge> {
        self.edges.iter().find(|e| &e.from == from && &e.to == to)
    }

    /// The geometry of an edge as a quadratic Bézier curve: start, control
    /// point and end, each `(x, y)`. `None` if a node is missing.
    pub fn edge_curve(&self, edge: &Edge) -> Option<[(f64, f64); 3]> {
        let from = self.node(&edge.from)?;
        let to = self.node(&edge.to)?;
        let (fx, fy) = from.centre();
        let (tx, ty) = to.centre();
        // The control point sits off the middle of the straight line, along
        // its normal, by `bend` units.
        let (mx, my) = ((fx + tx) / 2.0, (fy + ty) / 2.0);
        let len = ((tx - fx).powi(2) + (ty - fy).powi(2)).sqrt().max(1.0);
        let (nx, ny) = (-(ty - fy) / len, (tx - fx) / len);
        let control = (mx + nx * edge.bend, my + ny * edge.bend);
        let start = from.border_towards(control.0, control.1);
        let end = to.border_towards(control.0, control.1);
        Some([start, control, end])
    }

    /// Where the count of a herd's requests along an edge is written:
    /// `(x, baseline y, text-anchor)`, across the curve from its label (left
    /// of a vertical edge, above a curve whose label is under it, under the
    /// others).
    pub fn count_place(&self, edge: &Edge) -> Option<(f64, f64, &'static str)> {
        let [start, control, end] = self.edge_curve(edge)?;
        let (mx, my) = Diagram::point_on(&[start, control, end], 0.5);
        let vertical = (end.0 - start.0).abs() < 1.0;
        Some(if vertical {
            (mx - 8.0, my + 5.0, "end")
        } else if edge.bend > 0.0 {
            (mx, my - 8.0, "middle")
        } else {
            (mx, my + 20.0, "middle")
        })
    }

    /// How far down the picture reaches when only the nodes `shown` accepts
    /// are drawn: their boxes with room for a label under the last row, and
    /// every curve between two of them, with the label or count the page
    /// writes under its middle. A lesson crops the canvas to this, so a
    /// curve bowing under the last row is not cut off.
    pub fn height_showing(&self, shown: impl Fn(&NodeId) -> bool) -> f64 {
        let boxes = self
            .nodes
            .iter()
            .filter(|n| shown(&n.id))
            .map(|n| n.y + n.height + 40.0);
        let curves = self
            .edges
            .iter()
            .filter(|e| shown(&e.from) && shown(&e.to))
            .filter_map(|e| {
                let curve = self.edge_curve(e)?;
                let lowest = (0..=20)
                    .map(|t| Diagram::point_on(&curve, f64::from(t) / 20.0).1)
                    .fold(0.0, f64::max);
                // The label and the herd's count, whichever is lower, reach
                // 6 units under their baseline.
                let (_, label, _) = self.label_place(e)?;
                let (_, count, _) = self.count_place(e)?;
                Some((lowest + 10.0).max(label.max(count) + 6.0))
            });
        boxes.chain(curves).fold(0.0, f64::max)
    }

    /// Where an edge's label is written: `(x, baseline y, text-anchor)`.
    /// Beside the middle of its curve: right of a vertical edge, under a
    /// curve bowing below its line, above the others.
    pub fn label_place(&self, edge: &Edge) -> Option<(f64, f64, &'static str)> {
        let [start, control, end] = self.edge_curve(edge)?;
        let (mx, my) = Diagram::point_on(&[start, control, end], 0.5);
        let vertical = (end.0 - start.0).abs() < 1.0;
        Some(if vertical {
            (mx + 8.0, my, "start")
        } else if edge.bend > 0.0 {
            (mx, my + 18.0, "middle")
        } else {
            (mx, my - 8.0, "middle")
        })
    }

    /// The point at `t` (0 to 1) along a curve from [`Diagram::edge_curve`].
    pub fn point_on(curve: &[(f64, f64); 3], t: f64) -> (f64, f64) {
        let t = t.clamp(0.0, 1.0);
        let [(x0, y0), (x1, y1), (x2, y2)] = *curve;
        let u = 1.0 - t;
        (
            u * u * x0 + 2.0 * u * t * x1 + t * t * x2,
            u * u * y0 + 2.0 * u * t * y1 + t * t * y2,
        )
    }

    /// The same diagram turned a quarter: rows become columns, for narrow
    /// screens. Nodes keep their size and order; positions are laid out
    /// again by rank so nothing overlaps.
    pub fn transposed(&self) -> Diagram {
        const MARGIN: f64 = 20.0;
        // Room on the left for an edge to bow around a column of boxes.
        const GUTTER: f64 = 90.0;
        const GAP: f64 = 60.0;
        // Columns stand further apart than rows: a label on an edge across
        // them ("hand over") must fit between two boxes.
        const COLUMN_GAP: f64 = 90.0;
        let cell_w = self.nodes.iter().map(|n| n.width).fold(0.0, f64::max) + COLUMN_GAP;
        let cell_h = self.nodes.iter().map(|n| n.height).fold(0.0, f64::max) + GAP;
        // Each flow (reads, writes) in turn, top to bottom. (No sorting in
        // this file: each sort is kilobytes of the page's WebAssembly.)
        let flows = (0..=u8::MAX).filter(|flow| self.nodes.iter().any(|n| n.flow == *flow));
        // Node i stays node i; only its position changes.
        let mut nodes = self.nodes.clone();
        let mut top = MARGIN;
        let mut columns_used = 0usize;
        for flow in flows {
            let members = || self.nodes.iter().filter(move |n| n.flow == flow);
            let columns = ranks(members().map(|n| n.centre().1));
            let rows = ranks(members().map(|n| n.centre().0));
            for (node, original) in nodes.iter_mut().zip(&self.nodes) {
                if original.flow == flow {
                    let (cx, cy) = original.centre();
                    node.x = GUTTER + rank_of(&columns, cy) * cell_w;
                    node.y = top + rank_of(&rows, cx) * cell_h;
                }
            }
            top += rows.len() as f64 * cell_h;
            columns_used = columns_used.max(columns.len());
        }
        let mut narrow = Diagram {
            width: GUTTER + columns_used as f64 * cell_w - COLUMN_GAP + MARGIN,
            height: top - GAP + MARGIN,
            nodes,
            edges: Vec::new(),
        };
        // Positions changed, so every edge is routed again: straight when
        // nothing is in the way, else bowed just enough to clear the boxes
        // (a mirror flips which side a curve bows to, so that side first).
        // Of two edges between the same boxes, one each way, the one bowed
        // here stays bowed: straight, both would be drawn on one line, their
        // labels on top of each other.
        narrow.edges = self
            .edges
            .iter()
            .map(|e| {
                let preferred = if e.bend > 0.0 { -1.0 } else { 1.0 };
                let has_reverse = self.edges.iter().any(|o| o.from == e.to && o.to == e.from);
                let least = if has_reverse && e.bend != 0.0 { 50.0 } else { 0.0 };
                let bend = narrow
                    .clear_bend_of_at_least(e, preferred, least)
                    .unwrap_or(-e.bend);
                Edge { bend, ..e.clone() }
            })
            .collect();
        // Grow the canvas to hold every curve.
        for edge in &narrow.edges {
            if let Some(curve) = narrow.edge_curve(edge) {
                for t in 0..=20 {
                    let (x, y) = Diagram::point_on(&curve, t as f64 / 20.0);
                    narrow.width = narrow
                        .width
                        .max(x + 2.0 * MARGIN + 60.0 * f64::from(u8::from(!edge.label.is_empty())));
                    narrow.height = narrow.height.max(y + MARGIN);
                }
            }
        }
        narrow
    }

    /// The smallest bend (trying `preferred`'s side first) at which `edge`
    /// crosses no node but its own two ends; `None` if none up to 300.
    pub fn clear_bend(&self, edge: &Edge, preferred: f64) -> Option<f64> {
        self.clear_bend_of_at_least(edge, preferred, 0.0)
    }

    /// [`Diagram::clear_bend`], bowed by `least` at least.
    fn clear_bend_of_at_least(&self, edge: &Edge, preferred: f64, least: f64) -> Option<f64> {
        for magnitude in [
            0.0, 50.0, 90.0, 130.0, 170.0, 210.0, 250.0, 300.0, 350.0, 400.0, 450.0, 500.0,
        ]
        .into_iter()
        .filter(|m| *m >= least)
        {
            for side in [preferred, -preferred] {
                let candidate = Edge {
                    bend: side * magnitude,
                    ..edge.clone()
                };
                if !self.crosses_a_node(&candidate) {
                    return Some(candidate.bend);
                }
            }
        }
        None
    }

    /// Whether an edge's curve passes through a node other than its ends,
    /// or out of the canvas on the left or top.
    pub fn crosses_a_node(&self, edge: &Edge) -> bool {
        let Some(curve) = self.edge_curve(edge) else {
            return false;
        };
        (1..20).any(|t| {
            let (x, y) = Diagram::point_on(&curve, t as f64 / 20.0);
            x < 0.0
                || y < 0.0
                || self.nodes.iter().any(|n| {
                    n.id != edge.from
                        && n.id != edge.to
                        && x > n.x - 4.0
                        && x < n.x + n.width + 4.0
                        && y > n.y - 4.0
                        && y < n.y + n.height + 4.0
                })
        })
    }

    /// The cache-aside diagram. Reads: check the instance's near cache (when
    /// on), then Redis; on a hit return; on a miss (under the lock, or with
    /// a lease, when those are on) read the database, store the value with a
    /// TTL and return it; if Redis fails, fall back to the database. Writes:
    /// the database first, then the cache as the strategy says, then (with
    /// near caches) a Pub/Sub message that every instance receives.
    pub fn cache_aside_read() -> Diagram {
        use nodes::*;
        use Feature::{Breaker, FailSafe, Lease, Lock, Near, WrongOrder};
        use NodeShape::{Box as Step, Terminal};
        use System::{App, Database, Redis};
        const W: f64 = 150.0;
        let node =
            |id: NodeId, title: &str, detail: &str, system, shape, (column, row): (usize, usize)| Node {
                id,
                title: title.into(),
                detail: detail.into(),
                system,
                shape,
                flow: if row >= 2 { 1 } else { 0 },
                feature: None,
                x: 20.0 + column as f64 * (W + 50.0),
                y: [120.0, 330.0, 540.0, 730.0][row],
                width: W,
                height: 80.0,
            };
        let optional = |feature, n: Node| Node {
            feature: Some(feature),
            ..n
        };
        let edge = |from: NodeId, to: NodeId, label: &str, bend| Edge {
            from,
            to,
            label: label.into(),
            bend,
            feature: None,
        };
        let optional_edge = |feature, e: Edge| Edge {
            feature: Some(feature),
            ..e
        };
        Diagram {
            width: 1170.0,
            height: 830.0,
            nodes: vec![
                node(REQUEST, "Request", "read one record", App, Terminal, (0, 0)),
                optional(
                    Near,
                    node(
                        NEAR_CACHE,
                        "Near cache",
                        "this instance's memory",
                        App,
                        Step,
                        (1, 0),
                    ),
                ),
                node(CHECK_CACHE, "Check Redis", "GET key", Redis, Step, (2, 0)),
                node(
                    RETURN_CACHED,
                    "Return cached",
                    "no database work",
                    App,
                    Terminal,
                    (5, 0),
                ),
                node(
                    CACHE_ERROR,
                    "Redis unavailable",
                    "log it, carry on",
                    App,
                    Step,
                    (1, 1),
                ),
                optional(
                    Lease,
                    node(LEASE, "Lease", "SET lease token PX", Redis, Step, (2, 1)),
                ),
                optional(
                    Breaker,
                    node(BREAKER, "Circuit breaker", "open: skip Redis", App, Step, (0, 1)),
                ),
                optional(
                    Lock,
                    node(LOCK, "Lock", "SET NX PX, hand over", Redis, Step, (4, 0)),
                ),
                node(
                    QUERY_DATABASE,
                    "Query database",
                    "SELECT ... WHERE id = ?",
                    Database,
                    Step,
                    (3, 1),
                ),
                node(
                    STORE_IN_CACHE,
                    "Store in Redis",
                    "SET key value EX ttl",
                    Redis,
                    Step,
                    (4, 1),
                ),
                node(
                    RETURN_LOADED,
                    "Return loaded",
                    "next read is a hit",
                    App,
                    Terminal,
                    (5, 1),
                ),
                node(
                    WRITE_REQUEST,
                    "Write request",
                    "update or delete",
                    App,
                    Terminal,
                    (0, 2),
                ),
                node(
                    WRITE_DATABASE,
                    "Write database",
                    "UPDATE / DELETE first",
                    Database,
                    Step,
                    (1, 2),
                ),
                node(
                    UPDATE_CACHE,
                    "Then the cache",
                    "per write strategy",
                    Redis,
                    Step,
                    (2, 2),
                ),
                optional(
                    Near,
                    node(PUBLISH, "Publish", "PUBLISH channel key", Redis, Step, (3, 2)),
                ),
                node(RETURN_WRITTEN, "Return", "write done", App, Terminal, (5, 2)),
                optional(
                    Near,
                    node(INSTANCE_A, "Instance A", "drops its near copy", App, Step, (3, 3)),
                ),
                optional(
                    Near,
                    node(INSTANCE_B, "Instance B", "drops its near copy", App, Step, (4, 3)),
                ),
                optional(
                    Near,
                    node(INSTANCE_C, "Instance C", "drops its near copy", App, Step, (5, 3)),
                ),
            ],
            edges: vec![
                edge(REQUEST, NEAR_CACHE, "", 0.0),
                edge(NEAR_CACHE, CHECK_CACHE, "miss", 0.0),
                // Over the top of the row, clear of "Check Redis".
                edge(NEAR_CACHE, RETURN_CACHED, "near hit", -200.0),
                // With near caches off the read goes straight to Redis,
                // under the near-cache box.
                edge(REQUEST, CHECK_CACHE, "", 110.0),
                // Over the lock box.
                edge(CHECK_CACHE, RETURN_CACHED, "hit", -100.0),
                edge(CHECK_CACHE, QUERY_DATABASE, "miss", 0.0),
                edge(CHECK_CACHE, CACHE_ERROR, "error", 0.0),
                // Under the lease box.
                edge(CACHE_ERROR, QUERY_DATABASE, "fall back", 120.0),
                // With leases: take one before loading.
                edge(CHECK_CACHE, LEASE, "", 0.0),
                edge(LEASE, QUERY_DATABASE, "", 0.0),
                // With the lock: the holder loads, stores, hands the value
                // over and releases; waiters are handed the value.
                edge(CHECK_CACHE, LOCK, "miss", 0.0),
                edge(LOCK, QUERY_DATABASE, "holder", 0.0),
                edge(LOCK, LEASE, "", 0.0),
                edge(STORE_IN_CACHE, LOCK, "hand over", 0.0),
                edge(LOCK, RETURN_LOADED, "", 0.0),
                edge(LOCK, RETURN_CACHED, "handed", -45.0),
                edge(QUERY_DATABASE, STORE_IN_CACHE, "", 0.0),
                edge(STORE_IN_CACHE, RETURN_LOADED, "", 0.0),
                // After a fallback the store is skipped: Redis just failed.
                edge(QUERY_DATABASE, RETURN_LOADED, "skip store", 100.0),
                // An open breaker sends the read straight to the fallback
                // (it opens within a failed lookup's step).
                edge(REQUEST, BREAKER, "open", 0.0),
                edge(NEAR_CACHE, BREAKER, "miss, open", 0.0),
                edge(BREAKER, CACHE_ERROR, "", 0.0),
                // Fail-safe: the database failed, so back to the expired
                // copy the lookup kept, which answers.
                optional_edge(FailSafe, edge(QUERY_DATABASE, CHECK_CACHE, "fail-safe", 110.0)),
                edge(WRITE_REQUEST, WRITE_DATABASE, "", 0.0),
                edge(WRITE_DATABASE, UPDATE_CACHE, "then", 0.0),
                edge(UPDATE_CACHE, PUBLISH, "", 0.0),
                edge(PUBLISH, RETURN_WRITTEN, "", 0.0),
                edge(UPDATE_CACHE, RETURN_WRITTEN, "no near caches", -130.0),
                edge(PUBLISH, INSTANCE_A, "", 0.0),
                edge(PUBLISH, INSTANCE_B, "", 0.0),
                edge(PUBLISH, INSTANCE_C, "", 0.0),
                // The wrong order (section 4.2): the cache first.
                optional_edge(
                    WrongOrder,
                    edge(WRITE_REQUEST, UPDATE_CACHE, "delete first", 130.0),
                ),
                optional_edge(WrongOrder, edge(UPDATE_CACHE, WRITE_DATABASE, "", 0.0)),
                optional_edge(WrongOrder, edge(WRITE_DATABASE, RETURN_WRITTEN, "", 200.0)),
            ],
        }
    }
}

/// The distinct values (within one unit), in ascending order (each put in
/// its place as it comes: a handful of values).
fn ranks(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut distinct: Vec<f64> = Vec::new();
    for v in values {
        if !distinct.iter().any(|d| (d - v).abs() < 1.0) {
            let at = distinct.iter().position(|d| *d > v).unwrap_or(distinct.len());
            distinct.insert(at, v);
        }
    }
    distinct
}

/// The position of `v` among `ranks`.
fn rank_of(ranks: &[f64], v: f64) -> f64 {
    ranks.iter().position(|d| (d - v).abs() < 1.0).unwrap_or(0) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The box an edge's label covers, from [`Diagram::label_place`], for
    /// the page's 13-unit bold text: about 8 units a letter, 10 above the
    /// baseline and 3 below.
    fn label_box(d: &Diagram, e: &Edge) -> (f64, f64, f64, f64) {
        let (x, y, anchor) = d.label_place(e).unwrap();
        let width = e.label.chars().count() as f64 * 8.0;
        let left = if anchor == "middle" { x - width / 2.0 } else { x };
        (left, y - 10.0, left + width, y + 3.0)
    }

    fn overlap(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
        a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
    }

    /// The box a herd's count ("×200", 15-unit heavy text) covers beside
    /// an edge.
    fn count_box(d: &Diagram, e: &Edge) -> (f64, f64, f64, f64) {
        let (x, y, anchor) = d.count_place(e).unwrap();
        let width = 4.0 * 9.5;
        let left = match anchor {
            "middle" => x - width / 2.0,
            "end" => x - width,
            _ => x,
        };
        (left, y - 12.0, left + width, y + 3.0)
    }

    /// In the wide layout and the narrow one, every edge's label can be
    /// read: it covers no box (boxes are drawn over the edges) and no
    /// other label; and a herd's count is not written over its own edge's
    /// label.
    #[test]
    fn no_label_covers_a_box_or_another_label() {
        let wide = Diagram::cache_aside_read();
        for (layout, d) in [("wide", wide.clone()), ("narrow", wide.transposed())] {
            for e in &d.edges {
                if !e.label.is_empty() {
                    let (label, count) = (label_box(&d, e), count_box(&d, e));
                    assert!(!overlap(label, count), "{layout}: the count over {:?}", e.label);
                }
            }
            let labelled: Vec<&Edge> = d.edges.iter().filter(|e| !e.label.is_empty()).collect();
            for (i, e) in labelled.iter().enumerate() {
                let label = label_box(&d, e);
                for n in &d.nodes {
                    let node = (n.x, n.y, n.x + n.width, n.y + n.height);
                    assert!(!overlap(label, node), "{layout}: {:?} covers {:?}", e.label, n.id);
                }
                for other in &labelled[i + 1..] {
                    assert!(
                        !overlap(label, label_box(&d, other)),
                        "{layout}: {:?} and {:?} overlap",
                        e.label,
                        other.label
                    );
                }
            }
        }
    }

    #[test]
    fn every_edge_joins_two_existing_nodes() {
        let d = Diagram::cache_aside_read();
        for e in &d.edges {
            assert!(d.node(&e.from).is_some(), "{}", e.from);
            assert!(d.node(&e.to).is_some(), "{}", e.to);
            assert!(d.edge_curve(e).is_some());
        }
    }

    #[test]
    fn nodes_fit_inside_the_diagram_and_do_not_overlap() {
        assert_fits_without_overlap(&Diagram::cache_aside_read());
    }

    #[test]
    fn the_narrow_layout_is_taller_than_wide_and_tidy() {
        let wide = Diagram::cache_aside_read();
        let narrow = wide.transposed();
        // Narrow enough to draw a phone's width at well over half size.
        assert!(
            narrow.width < wide.width * 0.65,
            "{} x {}",
            narrow.width,
            narrow.height
        );
        assert_fits_without_overlap(&narrow);
        assert_eq!(narrow.edges.len(), wide.edges.len());
        // Request stays first, top left (after the gutter for curves).
        assert_eq!((narrow.nodes[0].x, narrow.nodes[0].y), (90.0, 20.0));
    }

    #[test]
    fn no_edge_runs_through_a_box_in_either_layout() {
        for d in [
            Diagram::cache_aside_read(),
            Diagram::cache_aside_read().transposed(),
        ] {
            for e in &d.edges {
                assert!(
                    !d.crosses_a_node(e),
                    "{} -> {} crosses a node (width {})",
                    e.from,
                    e.to,
                    d.width
                );
            }
        }
    }

    fn assert_fits_without_overlap(d: &Diagram) {
        for n in &d.nodes {
            assert!(n.x >= 0.0 && n.y >= 0.0, "{}", n.id);
            assert!(n.x + n.width <= d.width && n.y + n.height <= d.height, "{}", n.id);
        }
        for (i, a) in d.nodes.iter().enumerate() {
            for b in &d.nodes[i + 1..] {
                let apart = a.x + a.width <= b.x
                    || b.x + b.width <= a.x
                    || a.y + a.height <= b.y
                    || b.y + b.height <= a.y;
                assert!(apart, "{} overlaps {}", a.id, b.id);
            }
        }
    }

    #[test]
    fn edges_start_on_the_border_of_their_node() {
        let d = Diagram::cache_aside_read();
        let e = d.edge(&nodes::REQUEST, &nodes::NEAR_CACHE).unwrap();
        let [start, _, end] = d.edge_curve(e).unwrap();
        assert_eq!(start, (170.0, 160.0));
        assert_eq!(end, (220.0, 160.0));
    }

    #[test]
    fn points_on_a_curve_run_from_start_to_end() {
        let curve = [(0.0, 0.0), (50.0, 100.0), (100.0, 0.0)];
        assert_eq!(Diagram::point_on(&curve, 0.0), (0.0, 0.0));
        assert_eq!(Diagram::point_on(&curve, 1.0), (100.0, 0.0));
        assert_eq!(Diagram::point_on(&curve, 0.5), (50.0, 50.0));
        assert_eq!(Diagram::point_on(&curve, 7.0), (100.0, 0.0));
    }

    #[test]
    fn node_ids_serialize_as_plain_strings() {
        assert_eq!(
            serde_json::to_string(&nodes::CHECK_CACHE).unwrap(),
            "\"check_cache\""
        );
        let back: NodeId = serde_json::from_str("\"check_cache\"").unwrap();
        assert_eq!(back, nodes::CHECK_CACHE);
    }
}
