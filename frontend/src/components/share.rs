//! Links and snippets a learner can copy: the playground's current setup
//! as an address, and an embed snippet for the lesson step on screen.
//! Nothing secret goes in them: no sandbox name, only settings, lesson and
//! step; whoever opens one gets a sandbox of their own.

use leptos::prelude::*;

use crate::lessons::Position;
use crate::state::AppState;

/// The iframe snippet embedding lesson step `at`. A back end serves a
/// light start page at `embed/{lesson}`; a static build (`recorded`) has
/// the lesson's page itself at `embed/{lesson}/live/`.
pub fn embed_snippet(root: &str, at: Position, recorded: bool) -> String {
    let page = if recorded { "/live/" } else { "" };
    format!(
        r#"<iframe src="{root}embed/{lesson}{page}?step={step}&amp;theme=auto" title="Cache-aside playground: {title}" loading="lazy" style="border:0;width:100%;height:720px"></iframe>"#,
        lesson = at.lesson().id,
        step = at.step().id,
        title = at.lesson().title,
    )
}

/// Copies `text`, then says how it went in `status`.
fn copy(text: String, status: RwSignal<&'static str>) {
    let clipboard = window().navigator().clipboard();
    leptos::task::spawn_local(async move {
        let done = wasm_bindgen_futures::JsFuture::from(clipboard.write_text(&text)).await;
        status.set(if done.is_ok() {
            "Copied."
        } else {
            "Could not copy: select the text and copy it."
        });
    });
}

/// A read-only field with a Copy button.
#[component]
fn CopyField(label: &'static str, text: Signal<String>, testid: &'static str) -> impl IntoView {
    let status = RwSignal::new("");
    view! {
        <label class="setting copy-field">
            <span>{label}</span>
            <input type="text" readonly prop:value=move || text.get() data-testid=testid on:focus=move |ev| {
                use wasm_bindgen::JsCast;
                if let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) {
                    input.select();
                }
            }/>
        </label>
        <div class="row">
            <button type="button" on:click=move |_| copy(text.get_untracked(), status)>"Copy"</button>
            <span class="small" role="status">{move || status.get()}</span>
        </div>
    }
}

/// The current settings as an address: opening it sets a new sandbox up
/// the same way.
#[component]
pub fn SetupLink() -> impl IntoView {
    let state = expect_context::<AppState>();
    let text = Signal::derive(move || {
        state
            .settings
            .get()
            .map(|s| format!("{}?{}", crate::connection::app_root(), s.to_query()))
            .unwrap_or_default()
    });
    view! {
        <details class="share">
            <summary>"Share this setup"</summary>
            <p class="help">"Whoever opens this address gets a sandbox of their own with these settings."</p>
            <CopyField label="Address" text=text testid="setup-link"/>
        </details>
    }
}

/// The embed snippet of the step on screen.
#[component]
pub fn EmbedSnippet(at: Position) -> impl IntoView {
    let state = expect_context::<AppState>();
    let recorded = move || state.recorded.with(Option::is_some);
    let text = Signal::derive(move || embed_snippet(&crate::connection::app_root(), at, recorded()));
    let help = move || {
        if recorded() {
            "Paste this into any HTML or Markdown page: the lesson replays its recording there too; add &backend=URL to its address to run it live. README: \"A documentation site with no back end\"."
        } else {
            "Paste this into any HTML or Markdown page; the lesson loads when the reader presses Start. README: \"Embedding in a documentation site\"."
        }
    };
    view! {
        <details class="share">
            <summary>"Embed this step in a page"</summary>
            <p class="help">{help}</p>
            <CopyField label="Snippet" text=text testid="embed-snippet"/>
        </details>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snippet_names_the_step_and_is_lazy_and_titled() {
        let at = Position::from_query("stampede", Some("2")).unwrap();
        let snippet = embed_snippet("https://play.example.com/", at, false);
        assert!(
            snippet.contains(r#"src="https://play.example.com/embed/stampede?step=lock&amp;theme=auto""#),
            "{snippet}"
        );
        assert!(snippet.contains(r#"loading="lazy""#));
        assert!(snippet.contains(r#"title="Cache-aside playground: Stampede""#));
        assert!(snippet.contains("border:0"));
        let recorded = embed_snippet("https://docs.example.com/play/", at, true);
        assert!(
            recorded.contains(
                r#"src="https://docs.example.com/play/embed/stampede/live/?step=lock&amp;theme=auto""#
            ),
            "{recorded}"
        );
    }
}
