//! The page inside a documentation site's frame (`/embed/{lesson}/live`):
//! which lesson it shows, its theme (light, dark, or the reader's system
//! setting, switchable live by the host page), and its height, posted to
//! the host page when it asks for auto-height.

use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::connection::page_param;

/// The namespace of every message between the embed and its host page.
pub const MESSAGE_PREFIX: &str = "cache-aside-playground:";

/// The lesson id of an embed address: the segment after `embed/`, when
/// the page is an embed's live page.
pub fn lesson_in_path(path: &str) -> Option<&str> {
    let (_, rest) = path.split_once("/embed/")?;
    let (lesson, tail) = rest.split_once('/')?;
    (tail.trim_end_matches('/') == "live" && !lesson.is_empty()).then_some(lesson)
}

/// Whether this page is an embed.
pub fn is_embedded() -> bool {
    let path = window().location().pathname().unwrap_or_default();
    lesson_in_path(&path).is_some()
}

/// The theme a `theme` parameter asks for: `Some(true)` dark, `Some(false)`
/// light, `None` to follow the system.
pub fn theme_choice(param: Option<&str>) -> Option<bool> {
    match param {
        Some("dark") => Some(true),
        Some("light") => Some(false),
        _ => None,
    }
}

fn system_prefers_dark() -> bool {
    window()
        .match_media("(prefers-color-scheme: dark)")
        .ok()
        .flatten()
        .is_some_and(|m| m.matches())
}

fn set_theme(dark: bool) {
    if let Some(root) = document().document_element() {
        let _ = root.set_attribute("data-theme", if dark { "dark" } else { "light" });
    }
}

/// Applies `?theme=` (any page, embedded or not), follows the system when
/// it is `auto` or absent, and lets the host page switch it with
/// `{"type": "cache-aside-playground:theme", "theme": "dark"}`.
pub fn start_theme() {
    let chosen = std::rc::Rc::new(std::cell::Cell::new(theme_choice(page_param("theme").as_deref())));
    set_theme(chosen.get().unwrap_or_else(system_prefers_dark));

    // The system setting may change while the page is open.
    if let Some(query) = window()
        .match_media("(prefers-color-scheme: dark)")
        .ok()
        .flatten()
    {
        let chosen = chosen.clone();
        let on_change = Closure::<dyn FnMut()>::new(move || {
            if chosen.get().is_none() {
                set_theme(system_prefers_dark());
            }
        });
        let _ = query.add_event_listener_with_callback("change", on_change.as_ref().unchecked_ref());
        on_change.forget();
    }

    let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
        // Only the page that frames this one may switch it.
        let from_parent = match (event.source(), window().parent().ok().flatten()) {
            (Some(source), Some(parent)) => {
                let parent: &JsValue = parent.as_ref();
                let source: &JsValue = source.as_ref();
                parent == source
            }
            _ => false,
        };
        if !from_parent {
            return;
        }
        let data = event.data();
        let field = |name: &str| {
            js_sys::Reflect::get(&data, &JsValue::from_str(name))
                .ok()
                .and_then(|v| v.as_string())
        };
        if field("type").as_deref() == Some(&format!("{MESSAGE_PREFIX}theme")) {
            let wanted = field("theme");
            chosen.set(theme_choice(wanted.as_deref()));
            set_theme(chosen.get().unwrap_or_else(system_prefers_dark));
        }
    });
    let _ = window().add_event_listener_with_callback("message", on_message.as_ref().unchecked_ref());
    on_message.forget();
}

/// With `?autoheight=1` in a frame, tells the host page this page's height
/// whenever it changes, in our namespaced message and in the common
/// `{"context": "iframe.resize", "height": N}` form.
pub fn start_auto_height() {
    if page_param("autoheight").as_deref() != Some("1") {
        return;
    }
    let Some(parent) = window().parent().ok().flatten() else {
        return;
    };
    let window_ref = window();
    if parent == window_ref {
        return;
    }
    let last = std::rc::Rc::new(std::cell::Cell::new(0i32));
    let on_resize = Closure::<dyn FnMut()>::new(move || {
        let Some(body) = document().body() else {
            return;
        };
        // The content's own height (the document's would never shrink
        // below the frame's).
        let height = body.offset_height();
        if height == last.get() {
            return;
        }
        last.set(height);
        for message in [
            format!(r#"{{"type":"{MESSAGE_PREFIX}height","height":{height}}}"#),
            format!(r#"{{"context":"iframe.resize","height":{height}}}"#),
        ] {
            if let Ok(value) = js_sys::JSON::parse(&message) {
                // The height is no secret: any host may hear it.
                let _ = parent.post_message(&value, "*");
            }
        }
    });
    let Ok(observer) = web_sys::ResizeObserver::new(on_resize.as_ref().unchecked_ref()) else {
        return;
    };
    if let Some(body) = document().body() {
        observer.observe(&body);
    }
    on_resize.forget();
    std::mem::forget(observer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lesson_comes_from_the_live_path_under_any_prefix() {
        assert_eq!(lesson_in_path("/embed/stampede/live"), Some("stampede"));
        assert_eq!(lesson_in_path("/playground/embed/basics/live/"), Some("basics"));
        assert_eq!(lesson_in_path("/embed/basics"), None);
        assert_eq!(lesson_in_path("/"), None);
        assert_eq!(lesson_in_path("/embed//live"), None);
    }

    #[test]
    fn themes_are_light_dark_or_the_system() {
        assert_eq!(theme_choice(Some("dark")), Some(true));
        assert_eq!(theme_choice(Some("light")), Some(false));
        assert_eq!(theme_choice(Some("auto")), None);
        assert_eq!(theme_choice(Some("neon")), None);
        assert_eq!(theme_choice(None), None);
    }
}
