//! Entry point of the WASM build (Trunk builds this binary).

fn main() {
    frontend::mount();
}
