//! Switches given as environment variables, as a service manager or a
//! container would set them (`1`, `true`, `yes` on; `0`, `false`, `no`,
//! empty off). Its own test binary: it sets the process's environment.

use backend::Config;
use clap::Parser;

#[test]
fn switches_read_the_usual_spellings_from_the_environment() {
    for (value, on) in [
        ("1", true),
        ("true", true),
        ("yes", true),
        ("0", false),
        ("false", false),
        ("", false),
    ] {
        std::env::set_var("PLAYGROUND_HOSTED", value);
        std::env::set_var("TRUST_FORWARDED_FOR", value);
        std::env::set_var("NEAR_CACHE", value);
        let config =
            Config::try_parse_from(["cache-aside-playground"]).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        assert_eq!(
            (config.hosted, config.trust_forwarded_for, config.near_cache),
            (on, on, on),
            "{value:?}"
        );
    }
    std::env::remove_var("PLAYGROUND_HOSTED");
    let config = Config::try_parse_from(["cache-aside-playground", "--hosted"]).unwrap();
    assert!(config.hosted, "the flag still works");
}
