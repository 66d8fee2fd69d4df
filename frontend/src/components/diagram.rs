//! The cache-aside flow diagram as SVG, lit by the timeline's frame.

use leptos::prelude::*;
use shared::{
    Diagram, Edge, EdgeCount, Feature, Node, NodeId, NodeShape, RaceFix, SandboxSettings, StampedePolicy,
    StepStatus, System,
};

use crate::format;
use crate::state::AppState;
use crate::timeline::Timeline;

/// How a node looks right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeLook {
    /// Not part of the trace on screen (so far).
    Idle,
    /// Passed through earlier in the trace.
    Visited,
    /// The lit step.
    Active,
    /// A step at this node failed.
    Failed,
}

/// The look of node `id` in the timeline's current frame.
pub fn node_look(timeline: &Timeline, id: &NodeId) -> NodeLook {
    let Some(frame) = timeline.frame() else {
        return NodeLook::Idle;
    };
    let arrived = frame.progress >= 1.0;
    let upto = if arrived {
        frame.step_index + 1
    } else {
        frame.step_index
    };
    let seen = &frame.trace.steps[..upto];
    if seen
        .iter()
        .any(|s| &s.node == id && s.status == StepStatus::Error)
    {
        return NodeLook::Failed;
    }
    if arrived && &frame.step.node == id {
        return NodeLook::Active;
    }
    if seen.iter().any(|s| &s.node == id) {
        return NodeLook::Visited;
    }
    NodeLook::Idle
}

/// Whether the edge has been travelled in the current frame (including the
/// one the token is on).
pub fn edge_travelled(timeline: &Timeline, edge: &Edge) -> bool {
    let Some(frame) = timeline.frame() else {
        return false;
    };
    let steps = &frame.trace.steps;
    (1..=frame.step_index).any(|i| steps[i - 1].node == edge.from && steps[i].node == edge.to)
}

/// Whether an optional part of the flow is in use: the sandbox's settings
/// turn it on, or the trace or herd on screen went through one of its
/// nodes. Parts not in use are drawn faded.
pub fn feature_in_use(
    feature: Feature,
    diagram: &Diagram,
    settings: Option<&SandboxSettings>,
    timeline: &Timeline,
    herd: Option<&[EdgeCount]>,
) -> bool {
    let on = settings.is_some_and(|s| match feature {
        Feature::Near => s.near_cache,
        Feature::Lock => matches!(
            s.stampede,
            StampedePolicy::Lock | StampedePolicy::StaleWhileRevalidate
        ),
        Feature::Lease => s.race_fix == RaceFix::Lease,
        Feature::Breaker => s.breaker,
        Feature::FailSafe => s.fail_safe_secs > 0,
        Feature::WrongOrder => s.delete_first,
    });
    let is_part = |id: &NodeId| diagram.node(id).is_some_and(|n| n.feature == Some(feature));
    let is_part_edge =
        |from: &NodeId, to: &NodeId| diagram.edge(from, to).is_some_and(|e| e.feature == Some(feature));
    let traced = timeline.frame().is_some_and(|frame| {
        let steps = &frame.trace.steps;
        steps.iter().any(|s| is_part(&s.node))
            || steps.windows(2).any(|w| is_part_edge(&w[0].node, &w[1].node))
    });
    let herded = herd.is_some_and(|edges| {
        edges
            .iter()
            .any(|e| is_part(&e.from) || is_part(&e.to) || is_part_edge(&e.from, &e.to))
    });
    on || traced || herded
}

/// What the node's second line says: the real command of the trace on
/// screen once the token has been there, the generic text otherwise.
fn node_detail(timeline: &Timeline, node: &Node) -> String {
    let actual = timeline.frame().and_then(|frame| {
        let upto = if frame.progress >= 1.0 {
            frame.step_index + 1
        } else {
            frame.step_index
        };
        frame.trace.steps[..upto]
            .iter()
            .rev()
            .find(|s| s.node == node.id && !s.action.text().is_empty())
            .map(|s| s.action.text().to_string())
    });
    format::truncate(&actual.unwrap_or_else(|| node.detail.clone()), 21)
}

/// The measured time under a visited node (a database query's includes
/// its simulated delay).
fn node_time(timeline: &Timeline, id: &NodeId) -> Option<String> {
    let frame = timeline.frame()?;
    let upto = if frame.progress >= 1.0 {
        frame.step_index + 1
    } else {
        frame.step_index
    };
    let step = frame.trace.steps[..upto].iter().rev().find(|s| &s.node == id)?;
    if step.duration_us == 0 && step.simulated_delay_us == 0 {
        return None;
    }
    // With the database's simulated delay, their sum: a box has room for
    // one figure (the step list below splits it).
    Some(format::micros(step.duration_us + step.simulated_delay_us))
}

/// Below this viewport width the diagram is drawn turned a quarter, so it
/// stays readable on a phone.
const NARROW_PX: f64 = 700.0;

fn is_narrow() -> bool {
    window()
        .inner_width()
        .ok()
        .and_then(|w| w.as_f64())
        .is_some_and(|w| w < NARROW_PX)
}

/// The diagram.
#[component]
pub fn DiagramView() -> impl IntoView {
    let state = expect_context::<AppState>();
    let narrow = RwSignal::new(is_narrow());
    let resize = window_event_listener(leptos::ev::resize, move |_| {
        let now = is_narrow();
        if narrow.get_untracked() != now {
            narrow.set(now);
        }
    });
    on_cleanup(move || resize.remove());
    // What the picture shows now, in words: the flow, and the trace's
    // progress through it. A memo, so it changes per step, not per tick.
    // What the lesson step points at, worked out once per change rather
    // than by every node on every animation tick.
    let spotlight = Memo::new(move |_| crate::components::lesson::spotlight(state));
    let label = Memo::new(move |_| {
        let flow = "Cache-aside flow: a request checks Redis; on a hit the cached value is returned; on a miss the database is queried, the value is stored in Redis with a TTL and returned; if Redis fails, the database answers.";
        state.timeline.with(|t| match t.frame() {
            None => flow.to_string(),
            Some(frame) => {
                let arrived = frame.progress >= 1.0;
                let title = state
                    .diagram
                    .with(|d| d.node(&frame.step.node).map(|n| n.title.clone()))
                    .unwrap_or_default();
                format!(
                    "{flow} Now showing {} ({}): step {} of {}, {}{}.",
                    frame.trace.operation.label(),
                    frame.trace.outcome.label(),
                    frame.step_index + 1,
                    frame.trace.steps.len(),
                    if arrived { "at " } else { "on the way to " },
                    title
                )
            }
        })
    });
    move || {
        let diagram = if narrow.get() {
            state.diagram.get().transposed()
        } else {
            state.diagram.get()
        };
        // A lesson shows only the parts of the flow its step is about; the
        // diagram grows with the path. Free play shows it all.
        let parts = state.lesson.get().map(|at| at.step().parts);
        let shown = |id: &NodeId| parts.is_none_or(|parts| crate::lessons::shows(parts, id));
        let edges = diagram
            .edges
            .iter()
            .filter(|e| shown(&e.from) && shown(&e.to))
            .map(|e| edge_view(state, &diagram, e.clone()))
            .collect_view();
        // Without the hidden parts the picture ends higher up: crop it to
        // what is drawn (the boxes shown, and the curves between them).
        let height = if parts.is_some() {
            diagram.height_showing(shown)
        } else {
            diagram.height
        };
        let nodes = diagram
            .nodes
            .iter()
            .filter(|n| shown(&n.id))
            .map(|n| node_view(state, diagram.clone(), n.clone(), spotlight))
            .collect_view();
        let token_diagram = diagram.clone();
        let token = move || {
            state.timeline.with(|t| {
                let frame = t.frame()?;
                let to = token_diagram.node(&frame.step.node)?;
                let (x, y) = frame
                    .from
                    .and_then(|from| token_diagram.edge(from, &frame.step.node))
                    .and_then(|edge| token_diagram.edge_curve(edge))
                    .map(|curve| Diagram::point_on(&curve, frame.progress))
                    .unwrap_or_else(|| (to.x + to.width / 2.0, to.y));
                let system = system_class(to.system);
                Some(view! { <circle class=format!("token {system}") cx=num(x) cy=num(y) r="9" data-testid="token"/> })
            })
        };
        view! {
            <svg
                class="diagram"
                viewBox=format!("0 0 {} {}", num(diagram.width), num(height + 30.0))
                role="img"
                aria-label=move || label.get()
                data-testid="diagram"
            >
                <defs>
                    <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                        <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead"/>
                    </marker>
                    <marker id="arrow-lit" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                        <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead lit"/>
                    </marker>
                </defs>
                <g class="legend" transform=format!("translate(20 {})", num(height + 10.0))>
                    <rect class="swatch app" x="0" y="-10" width="14" height="14" rx="3"/>
                    <text x="20" y="2">"application"</text>
                    <rect class="swatch redis" x="120" y="-10" width="14" height="14" rx="3"/>
                    <text x="140" y="2">"Redis (cache)"</text>
                    <rect class="swatch database" x="260" y="-10" width="14" height="14" rx="3"/>
                    <text x="280" y="2">"SQLite (database)"</text>
                </g>
                {edges}
                {nodes}
                {token}
            </svg>
        }
    }
}

fn system_class(system: System) -> &'static str {
    match system {
        System::App => "app",
        System::Redis => "redis",
        System::Database => "database",
    }
}

/// A coordinate as an SVG attribute: to a tenth of a unit, without
/// `f64`'s `Display` (see `shared::decimal`).
fn num(value: f64) -> String {
    shared::decimal::trimmed(value, 1)
}

fn edge_view(state: AppState, diagram: &Diagram, edge: Edge) -> impl IntoView {
    let curve = diagram.edge_curve(&edge);
    let [start, control, end] = curve?;
    let d = format!(
        "M {} {} Q {} {} {} {}",
        num(start.0),
        num(start.1),
        num(control.0),
        num(control.1),
        num(end.0),
        num(end.1)
    );
    // The label sits beside the curve's midpoint (placed by the model, which
    // tests that no label covers a box or another label).
    let (lx, ly, anchor) = diagram.label_place(&edge)?;
    let label = edge.label.clone();
    // After a herd: how many of its requests went along this edge.
    let herd_count = {
        let edge = edge.clone();
        move || {
            state.herd_edges.with(|edges| {
                edges
                    .as_ref()?
                    .iter()
                    .find(|e| e.from == edge.from && e.to == edge.to)
                    .map(|e| e.count)
            })
        }
    };
    let herd_count2 = herd_count.clone();
    // The count sits across the curve from the label (placed by the model).
    let (cx, cy, count_anchor) = diagram.count_place(&edge)?;
    let lit = {
        let edge = edge.clone();
        move || state.timeline.with(|t| edge_travelled(t, &edge))
    };
    let lit2 = lit.clone();
    // An edge to or from a faded node is faded too.
    let ends: Vec<Node> = [&edge.from, &edge.to]
        .into_iter()
        .filter_map(|id| diagram.node(id).cloned())
        .collect();
    let whole = diagram.clone();
    let feature = edge.feature;
    let off = move || {
        ends.iter().any(|n| node_off(state, &whole, n))
            || feature.is_some_and(|f| feature_off(state, &whole, f))
    };
    Some(view! {
        <g class=move || {
            let base = match (lit(), herd_count().is_some()) {
                (_, true) => "edge herd",
                (true, false) => "edge lit",
                _ => "edge",
            };
            if off() { format!("{base} off") } else { base.to_string() }
        } data-edge=format!("{}->{}", edge.from, edge.to)>
            <path d=d marker-end=move || if lit2() { "url(#arrow-lit)" } else { "url(#arrow)" }/>
            <text x=num(lx) y=num(ly) text-anchor=anchor class="edge-label">{label}</text>
            <text x=num(cx) y=num(cy) text-anchor=count_anchor class="herd-count" data-testid="herd-count">
                {move || herd_count2().map(|n| format!("×{n}"))}
            </text>
        </g>
    })
}

/// Whether `node` is drawn faded: it belongs to a part of the flow that is
/// not in use.
fn node_off(state: AppState, diagram: &Diagram, node: &Node) -> bool {
    node.feature
        .is_some_and(|feature| feature_off(state, diagram, feature))
}

/// Whether an optional part of the flow is drawn faded now.
fn feature_off(state: AppState, diagram: &Diagram, feature: Feature) -> bool {
    state.settings.with(|settings| {
        state.herd_edges.with(|herd| {
            state
                .timeline
                .with(|t| !feature_in_use(feature, diagram, settings.as_ref(), t, herd.as_deref()))
        })
    })
}

fn node_view(state: AppState, diagram: Diagram, node: Node, spotlight: Memo<String>) -> impl IntoView {
    let id = node.id.clone();
    let look = {
        let id = id.clone();
        move || state.timeline.with(|t| node_look(t, &id))
    };
    let class = {
        let look = look.clone();
        let base = format!(
            "node {} {}",
            system_class(node.system),
            if node.shape == NodeShape::Terminal {
                "terminal"
            } else {
                "step"
            }
        );
        let node = node.clone();
        move || {
            let look = match look() {
                NodeLook::Idle => "idle",
                NodeLook::Visited => "visited",
                NodeLook::Active => "active",
                NodeLook::Failed => "failed",
            };
            let off = if node_off(state, &diagram, &node) {
                " off"
            } else {
                ""
            };
            // A lesson's "what to notice" points here.
            let spot = if spotlight.with(|spot| {
                spot.split(' ')
                    .any(|s| s.strip_prefix("node:") == Some(node.id.as_str()))
            }) {
                " spotlight"
            } else {
                ""
            };
            format!("{base} {look}{off}{spot}")
        }
    };
    let detail = {
        let node = node.clone();
        move || state.timeline.with(|t| node_detail(t, &node))
    };
    let time = {
        let id = id.clone();
        move || state.timeline.with(|t| node_time(t, &id))
    };
    let (cx, _) = node.centre();
    let rx = if node.shape == NodeShape::Terminal {
        "30"
    } else {
        "8"
    };
    view! {
        <g class=class data-node=id.to_string()>
            <rect x=num(node.x) y=num(node.y) width=num(node.width) height=num(node.height) rx=rx/>
            <text x=num(cx) y=num(node.y + 25.0) text-anchor="middle" class="node-title">{node.title.clone()}</text>
            <text x=num(cx) y=num(node.y + 46.0) text-anchor="middle" class="node-detail">{detail}</text>
            <text x=num(cx) y=num(node.y + 67.0) text-anchor="middle" class="node-time">{time}</text>
        </g>
    }
}
