//! The attribute parser's own cases: each mistake is one error.

use super::autoscale::AUTOSCALE_DEFAULT;
use super::*;

fn parse_ok(args: TokenStream) -> StepAttr {
    let cx = Ctxt::default();
    let attr = parse(args, &cx);
    assert_eq!(cx.into_messages(), Vec::<String>::new());
    attr
}

/// The one error `args` must give.
fn one_error(args: TokenStream) -> String {
    let cx = Ctxt::default();
    parse(args, &cx);
    let mut messages = cx.into_messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    messages.remove(0)
}

#[test]
fn autoscale_keys_left_out_take_the_defaults() {
    for args in [
        quote::quote!(mode = "actors", autoscale),
        quote::quote!(mode = "actors", autoscale()),
    ] {
        let attr = parse_ok(args);
        assert_eq!(attr.autoscale, Some(AUTOSCALE_DEFAULT));
        assert_eq!(attr.replicas, AUTOSCALE_DEFAULT.min_replicas);
    }
    let attr = parse_ok(quote::quote!(
        autoscale(min_replicas = 2, upscale_delay_ms = 0),
        mode = "actors"
    ));
    let want = Autoscale {
        min_replicas: 2,
        upscale_delay_ms: 0,
        ..AUTOSCALE_DEFAULT
    };
    assert_eq!((attr.autoscale, attr.replicas), (Some(want), 2));
}

#[test]
fn each_autoscale_mistake_is_one_error() {
    let cases = [
        (
            quote::quote!(mode = "actors", autoscale(max_replica = 4)),
            "unknown autoscale setting `max_replica` (did you mean `max_replicas`?)",
        ),
        (
            quote::quote!(mode = "actors", autoscale(downscale_delay_s = 30)),
            "delays are in milliseconds: did you mean `downscale_delay_ms`?",
        ),
        (
            quote::quote!(
                mode = "actors",
                autoscale(min_replicas = 1, min_replicas = 2)
            ),
            "duplicate `min_replicas`",
        ),
        (
            quote::quote!(mode = "actors", autoscale(max_replicas = "4")),
            "`max_replicas` takes a number, not a string: write `max_replicas = 4`",
        ),
        (
            quote::quote!(mode = "actors", autoscale(min_replicas = -1)),
            "not a negative one",
        ),
        (
            quote::quote!(mode = "actors", autoscale(target_ongoing_requests = 1.5)),
            "not a fraction",
        ),
        (
            quote::quote!(
                mode = "actors",
                autoscale(min_replicas = 0, max_replicas = 0)
            ),
            "`min_replicas` must be at least 1",
        ),
        (
            quote::quote!(mode = "actors", autoscale(target_ongoing_requests = 0)),
            "`target_ongoing_requests` must be at least 1",
        ),
        (
            quote::quote!(
                mode = "actors",
                autoscale(min_replicas = 4, max_replicas = 2)
            ),
            "`max_replicas = 2` is below `min_replicas = 4`",
        ),
        (
            quote::quote!(mode = "actors", autoscale(max_replicas = 0)),
            "`max_replicas = 0` is below the default `min_replicas` (1)",
        ),
        (
            quote::quote!(mode = "actors", autoscale(min_replicas = 9)),
            "`min_replicas = 9` is above the default `max_replicas` (8)",
        ),
        (
            quote::quote!(mode = "tasks", autoscale),
            "needs `mode = \"actors\"`",
        ),
        (
            quote::quote!(mode = "actors", replicas = 2, autoscale),
            "`replicas` and `autoscale` both set the replica count",
        ),
        (
            quote::quote!(mode = "actors", autoscale = 4),
            "expected `autoscale` (the defaults) or `autoscale(",
        ),
        (
            quote::quote!(mode = "actors", autoscal),
            "(did you mean `autoscale`?)",
        ),
    ];
    for (args, want) in cases {
        let got = one_error(args.clone());
        assert!(got.contains(want), "{args}: got {got:?}, want {want:?}");
    }
}

#[test]
fn each_mode_or_key_mistake_is_one_error_that_says_the_fix() {
    let cases = [
        (
            quote::quote!(mode = "ACTORS", replicas = 2),
            "did you mean `actors`? values are lower case",
        ),
        (
            quote::quote!(mode = actors, replicas = 2),
            "quote it, `mode = \"actors\"`",
        ),
        (quote::quote!(mode = Tasks), "quote it, `mode = \"tasks\"`"),
        (quote::quote!(mode = 2), "`mode` takes a string"),
        (
            quote::quote!(mode = "actors", replicas = "2"),
            "not a string: write `replicas = 2`",
        ),
        (
            quote::quote!(mode = "actors", max_batch_size = 8),
            "write `batch(max_size = 8)`",
        ),
        (
            quote::quote!(mode = "actors", batch = 16),
            "write `batch(max_size = 16)`",
        ),
        (
            quote::quote!(replicas = 2, batch(max_size = 8), placement = "task"),
            "`replicas`, `batch(..)`, `placement` need `mode = \"actors\"`",
        ),
        (
            quote::quote!(mode = "actors", batch(max_size = 8, wait_ms = 1.5)),
            "not a fraction",
        ),
    ];
    for (args, want) in cases {
        let got = one_error(args.clone());
        assert!(got.contains(want), "{args}: got {got:?}, want {want:?}");
    }
}

#[test]
fn a_batch_meant_under_another_key_still_batches_the_types() {
    for args in [
        quote::quote!(mode = "actors", batching(max_size = 8)),
        quote::quote!(mode = "actors", max_batch_size = 8),
        quote::quote!(mode = "actors", batch(max_size = 0)),
        quote::quote!(mode = "actors", batch(wait = 5)),
    ] {
        let cx = Ctxt::default();
        let attr = parse(args.clone(), &cx);
        assert!(attr.batch.is_some(), "{args}");
        assert_eq!(cx.into_messages().len(), 1, "{args}");
    }
    let cx = Ctxt::default();
    let attr = parse(quote::quote!(mode = "actor", replicas = 3), &cx);
    assert!(attr.mode == Mode::Actors && attr.replicas == 3);
    assert_eq!(cx.into_messages().len(), 1);
}
