//! An outsider's hostile tests of deploy-time settings (the deploy file,
//! `DeployOptions`, the plan's checks), of autoscaling on tokio's paused
//! clock, and of dynamic batching.
//!
//! No sleeps wait for work: a test waits on the thing itself (answers,
//! channels, latches, the pipeline's own counters), in virtual time where
//! the pipeline runs on the test's paused `current_thread` runtime, each
//! wait with a guard that fails instead of hanging.
//!
//! Four faults found here are fixed, each with its test: a node's own
//! table could not switch the replica mode its step's table set ("both
//! set"); a queue bound for a local step was accepted and ignored;
//! replicas added by the autoscaler got indexes at or past
//! `ctx.replicas()`; call deadlines ran on the pipeline's own real-clock
//! runtime, not on the runtime `DeployOptions::runtime` chose.

mod support;
use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use support::quiet_expected_panics;

use pipeline_core::prelude::*;
use pipeline_core::{AutoscalePolicy, DeployError, Device, OptionsError};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How long a test waits for something before failing: a hang guard,
/// never a timing assertion.
const GUARD: Duration = Duration::from_secs(60);

// ============================================================== helpers

/// A gate async steps wait at (a semaphore the test hands permits out of).
#[derive(Clone)]
struct Gate(Arc<Semaphore>);

impl Gate {
    fn closed() -> Self {
        Gate(Arc::new(Semaphore::new(0)))
    }
    fn release(&self, n: usize) {
        self.0.add_permits(n);
    }
    async fn pass(&self) {
        self.0.acquire().await.expect("gate").forget();
    }
}

/// A latch blocking threads (constructors) until the test opens it.
#[derive(Clone, Default)]
struct Latch(Arc<(Mutex<bool>, Condvar)>);

impl Latch {
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
    fn wait(&self) {
        let (lock, cv) = &*self.0;
        let (_g, timeout) = cv
            .wait_timeout_while(lock.lock().unwrap(), GUARD, |open| !*open)
            .unwrap();
        assert!(!timeout.timed_out(), "latch never opened");
    }
}

/// Every input a step ran on (duplicates kept).
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<u64>>>);

impl Seen {
    fn push(&self, x: u64) {
        self.0.lock().unwrap().push(x);
    }
    fn all(&self) -> Vec<u64> {
        self.0.lock().unwrap().clone()
    }
    /// How often each input was run.
    fn counts(&self) -> BTreeMap<u64, usize> {
        let mut m = BTreeMap::new();
        for x in self.all() {
            *m.entry(x).or_insert(0) += 1;
        }
        m
    }
}

/// Lets virtual time pass in 1 ms steps until `done` holds, at most
/// `limit` of virtual time.
async fn virtual_wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() <= limit,
            "{what}: not within {limit:?} of virtual time"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// (built replicas, target) of the pipeline's first step.
fn replicas<I: Send + 'static, O: Send + 'static>(p: &Pipeline<I, O>) -> (usize, usize) {
    let h = &p.health().steps[0];
    (h.replicas, h.target_replicas)
}

fn policy(min: usize, max: usize, up_ms: u64, down_ms: u64) -> AutoscalePolicy {
    AutoscalePolicy {
        min_replicas: min,
        max_replicas: max,
        target_ongoing_requests: 1,
        upscale_delay_ms: up_ms,
        downscale_delay_ms: down_ms,
    }
}

/// A fresh scratch directory for this test.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("outsider_deploy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ====================================================== steps for config

/// An actor step (thread replicas).
#[step(mode = "actors", replicas = 2)]
fn embed(x: u64) -> u64 {
    x + 1
}

/// A local step (the default mode).
#[step]
fn tidy(x: u64) -> u64 {
    x * 2
}

/// A tasks step.
#[step(mode = "tasks")]
fn score(x: u64) -> u64 {
    x + 3
}

/// `score(tidy(embed(input)))`: one actor, one local, one tasks step.
fn three() -> impl Deploy<Input = u64, Output = u64> {
    score(tidy(embed(Input::<u64>::new())))
}

/// The error of deploying `three()` with `options`.
fn deploy_err(options: DeployOptions) -> DeployError {
    match three().deploy_with(options) {
        Ok(_) => panic!("deploy succeeded"),
        Err(e) => e,
    }
}

/// The message of an `InvalidOption`, and its step.
fn invalid(e: DeployError) -> (String, String) {
    match e {
        DeployError::InvalidOption { step, message } => (step, message),
        other => panic!("not an InvalidOption: {other} ({other:?})"),
    }
}

/// The parser's message of an options error from a string.
fn parse_message(e: &DeployError) -> String {
    match e {
        DeployError::Options {
            path: None, source, ..
        } => source.to_string(),
        other => panic!("not an Options error without a path: {other} ({other:?})"),
    }
}

fn toml_err(text: &str) -> DeployError {
    match DeployOptions::from_toml_str(text) {
        Ok(o) => panic!("TOML {text:?} parsed: {o:?}"),
        Err(e) => {
            assert!(
                matches!(
                    &e,
                    DeployError::Options {
                        source: OptionsError::Toml(_),
                        ..
                    }
                ),
                "{text:?}: {e:?}"
            );
            e
        }
    }
}

fn json_err(text: &str) -> DeployError {
    match DeployOptions::from_json_str(text) {
        Ok(o) => panic!("JSON {text:?} parsed: {o:?}"),
        Err(e) => {
            assert!(
                matches!(
                    &e,
                    DeployError::Options {
                        source: OptionsError::Json(_),
                        ..
                    }
                ),
                "{text:?}: {e:?}"
            );
            e
        }
    }
}

// ======================================================== 1. deploy file

#[test]
fn toml_typos_and_wrong_types_are_typed_errors_naming_the_key() {
    let cases: &[(&str, &str)] = &[
        ("[steps.embed]\nreplica = 2", "replica"),
        ("[steps.embed]\nreplicas = \"2\"", "replicas"),
        ("[steps.embed]\nreplicas = -1", "replicas"),
        ("[steps.embed]\nreplicas = 2.5", "replicas"),
        ("[steps.embed]\nreplicas = true", "replicas"),
        ("[steps.embed]\nreplicas = 99999999999999999999", "replicas"),
        ("[steps.embed.autoscale]\nmax_replica = 3", "max_replica"),
        (
            "[steps.embed.autoscale]\nupscale_delay_ms = -5",
            "upscale_delay_ms",
        ),
        (
            "[steps.embed.autoscale]\nupscale_delay_s = 5",
            "upscale_delay_s",
        ),
        ("[steps.embed]\nautoscale = 4", "autoscale"),
        ("[steps.embed]\nautoscale = [1, 4]", "autoscale"),
        ("queue_bounds = 5", "queue_bounds"),
        ("queue_bound = -1", "queue_bound"),
        ("local = \"yes\"", "local"),
        ("[steps.embed]\ndevice = \"gpu\"", "gpu"),
        ("[steps.embed]\ndevice = \"\"", "device"),
        ("[steps.embed]\ndevice = \"cuda:-1\"", "cuda:-1"),
        ("[steps.embed]\ndevice = \"cuda\"", "cuda"),
        ("[steps.embed]\ndevice = []", "device"),
        ("[steps.embed]\ndevice = [\"cuda:0\", \"cuda:1\"]", "device"),
        ("[steps.embed]\ndevices = \"cpu\"", "devices"),
        ("[steps.embed]\nbatch = { max_size = 4 }", "batch"),
        ("steps = 5", "steps"),
        ("[[steps]]\nname = \"embed\"", "steps"),
        // A section twice: TOML refuses it itself.
        (
            "[steps.embed]\nreplicas = 2\n[steps.embed]\nreplicas = 3",
            "embed",
        ),
        ("[steps.embed]\nreplicas = 2\nreplicas = 3", "replicas"),
        // JSON handed to the TOML parser.
        (r#"{"steps": {"embed": {"replicas": 2}}}"#, ""),
        ("\u{0}", ""),
    ];
    for (text, key) in cases {
        let e = toml_err(text);
        let message = parse_message(&e);
        assert!(
            message.contains(key),
            "TOML {text:?}: the message does not name `{key}`: {message}"
        );
        // The top-level Display says what happened, once.
        assert_eq!(e.to_string(), "could not load deploy options");
    }
}

#[test]
fn json_typos_wrong_types_and_duplicates_are_typed_errors_naming_the_key() {
    let cases: &[(&str, &str)] = &[
        (r#"{"steps": {"embed": {"replica": 2}}}"#, "replica"),
        (r#"{"steps": {"embed": {"replicas": "2"}}}"#, "\"2\""),
        (r#"{"steps": {"embed": {"replicas": -1}}}"#, "-1"),
        (r#"{"steps": {"embed": {"replicas": 2.0}}}"#, "2"),
        (r#"{"steps": {"embed": {"replicas": 1e400}}}"#, ""),
        (
            r#"{"steps": {"embed": {"replicas": 184467440737095516160}}}"#,
            "",
        ),
        (
            r#"{"steps": {"embed": {"autoscale": {"max_replica": 3}}}}"#,
            "max_replica",
        ),
        (r#"{"steps": {"embed": {"autoscale": [1, 4]}}}"#, "table"),
        (r#"{"steps": {"embed": [2]}}"#, "table"),
        (r#"{"steps": {"embed": null}}"#, "table"),
        (r#"{"steps": null}"#, "step"),
        (r#"{"steps": [{"embed": {}}]}"#, "step"),
        (r#"{"queue_bounds": 5}"#, "queue_bounds"),
        (r#"{"local": 1}"#, "boolean"),
        (r#"[true, 5]"#, "table"),
        (r#""local""#, "table"),
        (r#"null"#, "table"),
        (
            r#"{"steps": {"embed": {"replicas": 2}, "embed": {"replicas": 3}}}"#,
            "embed",
        ),
        (
            r#"{"steps": {"embed": {"replicas": 2, "replicas": 3}}}"#,
            "replicas",
        ),
        (r#"{"steps": {}, "steps": {}}"#, "steps"),
        (r#"{"queue_bound": 1, "queue_bound": 2}"#, "queue_bound"),
        (
            r#"{"steps": {"embed": {"autoscale": {"min_replicas": 1, "min_replicas": 2}}}}"#,
            "min_replicas",
        ),
        (r#"{"steps": {"embed": {"device": ["cpu"]}}}"#, ""),
        (r#"{"steps": {"embed": {"device": "tpu:0"}}}"#, "tpu:0"),
        (r#"{"steps": {"embed": {"replicas": 2},}}"#, ""),
        (r#"{"steps": {"embed": {"replicas": 2}}} trailing"#, ""),
        // TOML handed to the JSON parser, and nothing at all.
        ("[steps.embed]\nreplicas = 2", ""),
        ("", ""),
        ("   \n", ""),
    ];
    for (text, key) in cases {
        let e = json_err(text);
        let message = parse_message(&e);
        assert!(
            message.contains(key),
            "JSON {text:?}: the message does not name `{key}`: {message}"
        );
    }
}

#[test]
fn an_empty_or_comment_only_toml_file_means_no_settings() {
    for text in ["", "\n\n", "# nothing here\n", "\u{feff}"] {
        match DeployOptions::from_toml_str(text) {
            Ok(o) => assert_eq!(o, DeployOptions::new(), "{text:?}"),
            Err(e) => panic!("{text:?}: {e} / {:?}", e.source()),
        }
    }
    // `{}` in JSON is the same.
    assert_eq!(
        DeployOptions::from_json_str("{}").unwrap(),
        DeployOptions::new()
    );
    // And so are explicitly empty tables.
    let o = DeployOptions::from_toml_str("[steps]").unwrap();
    assert_eq!(o, DeployOptions::new());
}

#[test]
fn files_that_cannot_be_read_are_typed_errors_naming_the_path() {
    let dir = scratch("files");
    let path_of = |e: &DeployError| match e {
        DeployError::Options {
            path: Some(path), ..
        } => path.clone(),
        other => panic!("not an Options error with a path: {other:?}"),
    };

    // A file that does not exist.
    let missing = dir.join("missing.toml");
    let e = DeployOptions::from_file(&missing).unwrap_err();
    assert_eq!(path_of(&e), missing);
    assert!(e.to_string().contains("missing.toml"), "{e}");
    let Some(OptionsError::Io(io)) = e.source().and_then(|s| s.downcast_ref::<OptionsError>())
    else {
        panic!("{e:?}")
    };
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);

    // A directory whose name ends in `.toml`.
    let folder = dir.join("deploy.toml");
    std::fs::create_dir_all(&folder).unwrap();
    let e = DeployOptions::from_file(&folder).unwrap_err();
    assert_eq!(path_of(&e), folder);
    assert!(
        matches!(
            &e,
            DeployError::Options {
                source: OptionsError::Io(_),
                ..
            }
        ),
        "{e:?}"
    );

    // A directory with no extension.
    let e = DeployOptions::from_file(&dir).unwrap_err();
    assert!(
        matches!(
            &e,
            DeployError::Options {
                source: OptionsError::Extension,
                ..
            }
        ),
        "{e:?}"
    );

    // Bytes that are not UTF-8.
    let latin1 = dir.join("latin1.toml");
    std::fs::write(&latin1, b"[steps.caf\xe9]\nreplicas = 2\n").unwrap();
    let e = DeployOptions::from_file(&latin1).unwrap_err();
    assert_eq!(path_of(&e), latin1);
    let Some(OptionsError::Io(io)) = e.source().and_then(|s| s.downcast_ref::<OptionsError>())
    else {
        panic!("{e:?}")
    };
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
    let latin1_json = dir.join("latin1.json");
    std::fs::write(&latin1_json, b"{\"steps\": {\"caf\xe9\": {}}}").unwrap();
    assert!(matches!(
        DeployOptions::from_file(&latin1_json).unwrap_err(),
        DeployError::Options {
            source: OptionsError::Io(_),
            ..
        }
    ));

    // JSON in a `.toml` file and TOML in a `.json` one.
    let json_in_toml = dir.join("mixed.toml");
    std::fs::write(&json_in_toml, r#"{"steps": {"embed": {"replicas": 2}}}"#).unwrap();
    assert!(matches!(
        DeployOptions::from_file(&json_in_toml).unwrap_err(),
        DeployError::Options {
            source: OptionsError::Toml(_),
            ..
        }
    ));
    let toml_in_json = dir.join("mixed.json");
    std::fs::write(&toml_in_json, "[steps.embed]\nreplicas = 2\n").unwrap();
    assert!(matches!(
        DeployOptions::from_file(&toml_in_json).unwrap_err(),
        DeployError::Options {
            source: OptionsError::Json(_),
            ..
        }
    ));

    // Other extensions, and none.
    for name in [
        "deploy.yaml",
        "deploy",
        "deploy.toml.bak",
        "deploy.TOML",
        ".toml",
    ] {
        let path = dir.join(name);
        std::fs::write(&path, "queue_bound = 5\n").unwrap();
        let e = DeployOptions::from_file(&path).unwrap_err();
        assert!(
            matches!(
                &e,
                DeployError::Options {
                    source: OptionsError::Extension,
                    ..
                }
            ),
            "{name}: {e:?}"
        );
        assert!(e.to_string().contains(name), "{e}");
    }

    // An empty `.json` file is an error, an empty `.toml` one is no settings.
    let empty_json = dir.join("empty.json");
    std::fs::write(&empty_json, "").unwrap();
    assert!(DeployOptions::from_file(&empty_json).is_err());
    let empty_toml = dir.join("empty.toml");
    std::fs::write(&empty_toml, "").unwrap();
    assert_eq!(
        DeployOptions::from_file(&empty_toml).unwrap(),
        DeployOptions::new()
    );

    // A good file, with CRLF line ends, loads and deploys.
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "queue_bound = 7\r\n[steps.embed]\r\nreplicas = 3\r\nqueue_bound = 5\r\n",
    )
    .unwrap();
    let o = DeployOptions::from_file(&good).unwrap();
    let p = three().deploy_with(o).unwrap();
    let r = p.report();
    assert_eq!(
        (r[0].step, r[0].replicas, r[0].queue_bound),
        ("embed", 3, 5)
    );
    assert_eq!((r[2].step, r[2].queue_bound), ("score", 7));
    assert_eq!(p.call(1).unwrap(), (1 + 1) * 2 + 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_step_names_fail_deploy_listing_the_known_ones() {
    for name in [
        "Embed", "embedd", " embed", "embed ", "", "embed_1", "Input", "*",
    ] {
        let e = deploy_err(DeployOptions::new().replicas(name, 2));
        match &e {
            DeployError::UnknownStep { name: n, known } => {
                assert_eq!(n, name);
                assert_eq!(known, "embed, score, tidy");
            }
            other => panic!("{name:?}: {other:?}"),
        }
    }
    // From a file too, and when the table sets nothing at all.
    let o = DeployOptions::from_toml_str("[steps.embedd]").unwrap();
    assert!(matches!(deploy_err(o), DeployError::UnknownStep { .. }));
    // Forced local, an unknown name is still a typo.
    let o = DeployOptions::local().queue_bound("scroe", 4);
    assert!(matches!(deploy_err(o), DeployError::UnknownStep { .. }));
}

#[test]
fn values_that_cannot_work_fail_deploy_naming_the_step_and_the_key() {
    let max_bound = usize::MAX >> 3;
    let cases: Vec<(DeployOptions, &str, &str)> = vec![
        (
            DeployOptions::new().replicas("embed", 0),
            "embed",
            "replicas",
        ),
        (
            DeployOptions::new().replicas("embed", 4097),
            "embed",
            "4096",
        ),
        (
            DeployOptions::new().replicas("embed", usize::MAX),
            "embed",
            "replicas",
        ),
        (
            DeployOptions::new().queue_bound("embed", 0),
            "embed",
            "queue_bound",
        ),
        (
            DeployOptions::new().queue_bound("score", 0),
            "score",
            "queue_bound",
        ),
        (
            DeployOptions::new().queue_bound("embed", max_bound + 1),
            "embed",
            "queue_bound",
        ),
        (
            DeployOptions::new().queue_bound("embed", usize::MAX),
            "embed",
            "queue_bound",
        ),
        (
            DeployOptions::new().default_queue_bound(0),
            "*",
            "queue_bound",
        ),
        (
            DeployOptions::new().autoscale("embed", policy(0, 4, 0, 0)),
            "embed",
            "min_replicas",
        ),
        (
            DeployOptions::new().autoscale("embed", policy(5, 4, 0, 0)),
            "embed",
            "max_replicas (4) is below min_replicas (5)",
        ),
        (
            DeployOptions::new().autoscale("embed", policy(4097, 5000, 0, 0)),
            "embed",
            "min_replicas",
        ),
        (
            DeployOptions::new().autoscale(
                "embed",
                AutoscalePolicy {
                    target_ongoing_requests: 0,
                    ..policy(1, 2, 0, 0)
                },
            ),
            "embed",
            "target_ongoing_requests",
        ),
        (
            DeployOptions::new()
                .replicas("embed", 2)
                .autoscale("embed", policy(1, 2, 0, 0)),
            "embed",
            "both",
        ),
        (
            DeployOptions::new().device("embed", Device::Cuda(0)),
            "embed",
            "cuda:0",
        ),
        (
            DeployOptions::new().device("tidy", Device::Cuda(3)),
            "tidy",
            "cuda:3",
        ),
        // Forced local: a bad count is still a typo.
        (
            DeployOptions::local().replicas("embed", 0),
            "embed",
            "replicas",
        ),
        // Settings that apply to actor steps alone, on other steps.
        (DeployOptions::new().replicas("tidy", 2), "tidy", "replicas"),
        (
            DeployOptions::new().replicas("score", 2),
            "score",
            "replicas",
        ),
        (
            DeployOptions::new().autoscale("score", policy(1, 2, 0, 0)),
            "score",
            "autoscale",
        ),
        (
            DeployOptions::new().autoscale("tidy", AutoscalePolicy::DEFAULT),
            "tidy",
            "autoscale",
        ),
    ];
    for (options, step, key) in cases {
        let shown = format!("{options:?}");
        let (at, message) = invalid(deploy_err(options));
        assert_eq!(at, step, "{shown}: {message}");
        assert!(message.contains(key), "{shown}: `{key}` not in: {message}");
    }
}

#[test]
fn bad_values_from_a_file_fail_deploy_like_the_builders() {
    let cases: &[(&str, &str, &str)] = &[
        ("[steps.embed]\nreplicas = 0", "embed", "replicas"),
        ("[steps.embed]\nqueue_bound = 0", "embed", "queue_bound"),
        ("queue_bound = 0", "*", "queue_bound"),
        (
            "[steps.embed]\nreplicas = 2\n[steps.embed.autoscale]\nmax_replicas = 4",
            "embed",
            "both",
        ),
        (
            "[steps.embed.autoscale]\nmin_replicas = 3\nmax_replicas = 2",
            "embed",
            "below",
        ),
        // max from the default (8).
        (
            "[steps.embed.autoscale]\nmin_replicas = 9",
            "embed",
            "default",
        ),
        (
            "[steps.embed.autoscale]\nmin_replicas = 0",
            "embed",
            "min_replicas",
        ),
        (
            "[steps.embed.autoscale]\ntarget_ongoing_requests = 0",
            "embed",
            "target_ongoing_requests",
        ),
        ("[steps.tidy.autoscale]", "tidy", "autoscale"),
        ("[steps.score]\nreplicas = 1", "score", "replicas"),
        ("[steps.embed]\ndevice = \"cuda:0\"", "embed", "CUDA"),
        (
            "[steps.embed]\nremote = \"nats://127.0.0.1:4222\"",
            "embed",
            "remote",
        ),
    ];
    for (text, step, key) in cases {
        let o = DeployOptions::from_toml_str(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let (at, message) = invalid(deploy_err(o));
        assert_eq!(&at, step, "{text}: {message}");
        assert!(message.contains(key), "{text}: `{key}` not in: {message}");
    }
}

#[test]
fn extreme_but_legal_values_deploy_and_answer() {
    // The largest queue bound tokio takes.
    let max_bound = usize::MAX >> 3;
    let p = three()
        .deploy_with(
            DeployOptions::new()
                .queue_bound("embed", max_bound)
                .default_queue_bound(max_bound),
        )
        .unwrap();
    assert_eq!(p.call(1).unwrap(), 7);
    let r = p.report();
    assert!(r.iter().all(|r| r.queue_bound == max_bound), "{r:?}");
    assert_eq!(p.metrics()[0].queued, 0);
    drop(p);

    // A huge autoscale ceiling and delays: the step starts at min and
    // answers; nothing overflows in the autoscaler's clock.
    let huge = AutoscalePolicy {
        min_replicas: 1,
        max_replicas: usize::MAX,
        target_ongoing_requests: usize::MAX,
        upscale_delay_ms: u64::MAX,
        downscale_delay_ms: u64::MAX,
    };
    let p = three()
        .deploy_with(DeployOptions::new().autoscale("embed", huge))
        .unwrap();
    assert_eq!(p.call(1).unwrap(), 7);
    assert_eq!(replicas(&p), (1, 1));
    drop(p);

    // The same from JSON, where integers reach u64::MAX.
    let json = format!(
        r#"{{"steps": {{"embed": {{"autoscale": {{"max_replicas": {}, "upscale_delay_ms": {}, "downscale_delay_ms": {}}}}}}}}}"#,
        u64::MAX,
        u64::MAX,
        u64::MAX
    );
    let o = DeployOptions::from_json_str(&json).unwrap();
    let p = three().deploy_with(o).unwrap();
    assert_eq!(p.call(2).unwrap(), 9);

    // `local = true` in a file forces every step inline: the actor
    // settings beside it are allowed (that is the point of it, for
    // tests) and the report says why the mode differs.
    let o = DeployOptions::from_toml_str(
        "local = true\n[steps.embed]\nreplicas = 3\nqueue_bound = 1\n[steps.score]\nqueue_bound = 1",
    )
    .unwrap();
    let p = three().deploy_with(o).unwrap();
    let r = &p.report()[0];
    assert_eq!((r.running, r.replicas, r.autoscale), (Mode::Local, 1, None));
    assert!(r.note.is_some());
    assert_eq!(p.call(1).unwrap(), 7);
}

#[test]
fn a_queue_bound_for_a_local_step_is_not_silently_ignored() {
    // `replicas` on a local step is refused ("applies to actor steps");
    // a queue bound there bounds nothing (a local step has no queue).
    let e = three().deploy_with(DeployOptions::new().queue_bound("tidy", 1));
    match e {
        Err(DeployError::InvalidOption { step, message }) => {
            assert_eq!(step, "tidy");
            assert!(message.contains("queue_bound"), "{message}");
        }
        Err(other) => panic!("{other:?}"),
        Ok(p) => {
            // If it is accepted, it must bound something: two calls at
            // once through a bound of 1 can never both be inside.
            let r = &p.report()[1];
            panic!(
                "queue_bound = 1 on local step `tidy` accepted and ignored (report says {}, mode {:?})",
                r.queue_bound, r.running
            );
        }
    }
}

/// `embed` used twice: nodes `embed` and `embed_1`.
fn twice() -> impl Deploy<Input = u64, Output = u64> {
    embed(embed(Input::<u64>::new()))
}

#[test]
fn a_nodes_own_setting_overrides_the_steps_replica_mode() {
    // Every node of `embed` fixed at 2, but its second node autoscaled:
    // the node's own table is the more specific one.
    let o = DeployOptions::from_toml_str(
        "[steps.embed]\nreplicas = 2\n[steps.embed_1.autoscale]\nmin_replicas = 1\nmax_replicas = 3",
    )
    .unwrap();
    let p = twice()
        .deploy_with(o)
        .unwrap_or_else(|e| panic!("a node's autoscale over the step's replicas: {e}"));
    let r = p.report();
    assert_eq!(
        (r[0].step, r[0].replicas, r[0].autoscale),
        ("embed", 2, None)
    );
    assert_eq!(r[1].step, "embed_1");
    assert_eq!(r[1].autoscale.map(|a| a.max_replicas), Some(3));
    drop(p);
    // And the other way round: every node autoscaled, one fixed.
    let o = DeployOptions::new()
        .autoscale("embed", policy(1, 3, 0, 0))
        .replicas("embed_1", 2);
    let p = twice()
        .deploy_with(o)
        .unwrap_or_else(|e| panic!("a node's replicas over the step's autoscale: {e}"));
    assert_eq!(p.report()[1].replicas, 2);
    assert_eq!(p.report()[1].autoscale, None);
}

#[test]
fn settings_by_node_name_reach_that_node_only() {
    let o = DeployOptions::from_json_str(
        r#"{"steps": {"embed_1": {"replicas": 3, "queue_bound": 9}}, "queue_bound": 11}"#,
    )
    .unwrap();
    let p = twice().deploy_with(o).unwrap();
    let r = p.report();
    assert_eq!((r[0].replicas, r[0].queue_bound), (2, 11));
    assert_eq!((r[1].replicas, r[1].queue_bound), (3, 9));
    assert_eq!(p.call(0).unwrap(), 2);
}

// ========================================================= 2. autoscaling

/// A task-placed step that takes 1 ms of virtual time per call and
/// records every input it runs; its constructor records
/// `(ctx.index(), ctx.replicas())`.
struct Tick {
    seen: Seen,
}

#[derive(Clone, Default)]
struct TickInit {
    seen: Seen,
    contexts: Arc<Mutex<Vec<(usize, usize)>>>,
}

#[step(mode = "actors", placement = "task")]
impl Tick {
    fn new(ctx: &ReplicaContext, init: TickInit) -> Self {
        init.contexts
            .lock()
            .unwrap()
            .push((ctx.index(), ctx.replicas()));
        Tick { seen: init.seen }
    }
    async fn call(&self, x: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.seen.push(x);
        x * 2
    }
}

/// Deploys `Tick` autoscaled by `policy` onto the test's runtime.
fn ticking(policy: AutoscalePolicy, init: &TickInit) -> Pipeline<u64, u64> {
    Tick::bind(init.clone(), Input::<u64>::new())
        .deploy_with(
            DeployOptions::new()
                .runtime(tokio::runtime::Handle::current())
                .autoscale("Tick", policy),
        )
        .expect("deploy")
}

/// Calls that keep arriving while replicas drain (scaled down with no
/// delay) are all answered, each exactly once, over repeated waves of
/// scaling up and down.
#[tokio::test(start_paused = true)]
async fn calls_arriving_while_replicas_drain_are_answered_exactly_once() {
    let init = TickInit::default();
    let p = ticking(policy(1, 5, 0, 0), &init);
    let mut expected = Vec::new();
    let mut seen_while_draining = Vec::new();
    let mut next = 0u64;
    for _wave in 0..4 {
        // A burst: 30 callers x 10 calls scale the step up.
        let callers: Vec<_> = (0..30)
            .map(|_| {
                let xs: Vec<u64> = (next..next + 10).collect();
                next += 10;
                expected.extend(xs.iter().copied());
                let p = p.clone();
                tokio::spawn(async move {
                    for x in xs {
                        assert_eq!(p.call_async(x).await.expect("no call fails"), x * 2);
                    }
                })
            })
            .collect();
        // A trickle, one call at a time, through the end of the burst and
        // while the replicas drain after it, until only one is left.
        let start = Instant::now();
        loop {
            let burst_done = callers.iter().all(|c| c.is_finished());
            if burst_done && replicas(&p) == (1, 1) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "never scaled down"
            );
            if burst_done {
                seen_while_draining.push(replicas(&p).0);
            }
            let x = next;
            next += 1;
            expected.push(x);
            assert_eq!(p.call_async(x).await.expect("a call while draining"), x * 2);
        }
        for c in callers {
            c.await.unwrap();
        }
    }
    // Replica 0, and at least one more per wave.
    let built = init.contexts.lock().unwrap().len();
    assert!(
        built > 4,
        "the bursts scaled up too little: {built} replicas built"
    );
    assert!(
        seen_while_draining.iter().any(|&r| r > 1),
        "no call arrived while replicas drained: {seen_while_draining:?}"
    );
    let counts = init.seen.counts();
    let twice: Vec<_> = counts.iter().filter(|(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "inputs run more than once: {twice:?}");
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        expected,
        "every call ran"
    );
    let m = &p.metrics()[0];
    assert_eq!(
        (m.requests, m.errors, m.queued, m.in_flight),
        (expected.len() as u64, 0, 0, 0)
    );
}

/// `ReplicaContext::index` is documented as `0..replicas()`; replicas
/// added by the autoscaler after earlier ones left keep counting up.
#[tokio::test(start_paused = true)]
async fn a_replicas_index_stays_below_its_replica_count_across_rescaling() {
    let init = TickInit::default();
    let p = ticking(policy(1, 2, 0, 0), &init);
    for round in 0..3u64 {
        let calls: Vec<_> = (0..40u64)
            .map(|i| {
                let p = p.clone();
                tokio::spawn(async move { p.call_async(round * 100 + i).await.unwrap() })
            })
            .collect();
        for c in calls {
            c.await.unwrap();
        }
        virtual_wait("down to one", Duration::from_secs(5), || {
            replicas(&p) == (1, 1)
        })
        .await;
    }
    let contexts = init.contexts.lock().unwrap().clone();
    assert!(
        contexts.len() >= 3,
        "scaled up fewer than 2 times: {contexts:?}"
    );
    for (index, replicas) in &contexts {
        assert!(
            index < replicas,
            "a replica built with index {index} of {replicas}: {contexts:?}"
        );
    }
}

/// With `min_replicas == max_replicas` nothing ever scales, whatever the
/// load, and every call is answered.
#[tokio::test(start_paused = true)]
async fn min_equal_to_max_never_scales() {
    let gate = Gate::closed();
    let p = Held::bind(gate.clone(), Input::<u64>::new())
        .deploy_with(
            DeployOptions::new()
                .runtime(tokio::runtime::Handle::current())
                .autoscale("Held", policy(2, 2, 0, 0)),
        )
        .unwrap();
    assert_eq!(replicas(&p), (2, 2));
    let calls: Vec<_> = (0..50u64)
        .map(|x| {
            let p = p.clone();
            tokio::spawn(async move { p.call_async(x).await })
        })
        .collect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        assert_eq!(replicas(&p), (2, 2), "scaled under load");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    gate.release(50);
    for (x, c) in calls.into_iter().enumerate() {
        assert_eq!(c.await.unwrap().unwrap(), x as u64 + 1);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        assert_eq!(replicas(&p), (2, 2), "scaled when idle");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A task-placed step whose calls wait at the gate, then answer `x + 1`.
struct Held {
    gate: Gate,
}

#[step(mode = "actors", placement = "task")]
impl Held {
    fn new(gate: Gate) -> Self {
        Held { gate }
    }
    async fn call(&self, x: u64) -> u64 {
        self.gate.pass().await;
        x + 1
    }
}

/// Counts builds and drops of a model; replica 1's constructor behaves
/// as `replica_1` says.
#[derive(Clone)]
struct Life {
    builds: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
    /// Replica-1 constructor calls.
    attempts: Arc<AtomicUsize>,
    replica_1: Replica1,
    gate: Gate,
    /// Replica 1's constructor says here when it starts.
    building: Arc<Mutex<Option<tokio::sync::mpsc::UnboundedSender<usize>>>>,
    latch: Latch,
}

#[derive(Clone, Copy, PartialEq)]
enum Replica1 {
    Fails,
    Panics,
    /// Waits at the latch, then builds.
    Waits,
}

impl Life {
    fn new(replica_1: Replica1) -> Self {
        Life {
            builds: Arc::default(),
            drops: Arc::default(),
            attempts: Arc::default(),
            replica_1,
            gate: Gate::closed(),
            building: Arc::default(),
            latch: Latch::default(),
        }
    }
    fn builds(&self) -> usize {
        self.builds.load(Ordering::SeqCst)
    }
    fn drops(&self) -> usize {
        self.drops.load(Ordering::SeqCst)
    }
    fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
    fn make(&self, index: usize) -> Result<(), String> {
        if index == 1 {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if let Some(tx) = &*self.building.lock().unwrap() {
                let _ = tx.send(index);
            }
            match self.replica_1 {
                Replica1::Fails => return Err("replica 1 cannot load its weights".into()),
                Replica1::Panics => panic!("replica 1 panicked on purpose"),
                Replica1::Waits => self.latch.wait(),
            }
        }
        self.builds.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A task-placed model counting its lives; calls wait at the gate.
struct Mortal {
    life: Life,
    index: usize,
}

#[step(mode = "actors", placement = "task")]
impl Mortal {
    fn new(ctx: &ReplicaContext, life: Life) -> Result<Self, String> {
        life.make(ctx.index())?;
        Ok(Mortal {
            life,
            index: ctx.index(),
        })
    }
    async fn call(&self, hold: bool) -> usize {
        if hold {
            self.life.gate.pass().await;
        }
        self.index
    }
}

impl Drop for Mortal {
    fn drop(&mut self) {
        self.life.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn mortal(life: &Life, policy: AutoscalePolicy) -> Result<Pipeline<bool, usize>, DeployError> {
    Mortal::bind(life.clone(), Input::<bool>::new()).deploy_with(
        DeployOptions::new()
            .runtime(tokio::runtime::Handle::current())
            .autoscale("Mortal", policy),
    )
}

/// Dropping the pipeline while the autoscaler's new replica is still in
/// its constructor: the drop returns, and once the constructor finishes
/// the replica it built is dropped, not kept nor served.
#[tokio::test(start_paused = true)]
async fn dropping_the_pipeline_while_a_replica_is_built_drops_what_it_builds() {
    let life = Life::new(Replica1::Waits);
    let (tx, mut building) = tokio::sync::mpsc::unbounded_channel();
    *life.building.lock().unwrap() = Some(tx);
    let p = mortal(&life, policy(1, 2, 0, 60_000)).unwrap();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.call_async(true).await })
        })
        .collect();
    assert_eq!(building.recv().await, Some(1), "replica 1 is being built");
    assert_eq!(replicas(&p), (1, 2));
    for h in held {
        h.abort();
        assert!(h.await.unwrap_err().is_cancelled());
    }
    drop(p);
    // Replica 0 finishes the call it was running; replica 1's
    // constructor finishes.
    life.gate.release(2);
    life.latch.open();
    virtual_wait("every model built is dropped", GUARD, || {
        life.builds() == 2 && life.drops() == 2
    })
    .await;
    // And stays so: the late replica did not start serving.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!((life.builds(), life.drops(), life.attempts()), (2, 2, 1));
}

/// The same with thread replicas, deployed outside any runtime: dropping
/// the last handle joins the thread still in the constructor, and what it
/// built is dropped.
#[test]
fn dropping_the_pipeline_while_a_thread_replica_is_built_joins_it() {
    struct Lasting {
        life: Life,
    }
    #[step(mode = "actors", placement = "thread")]
    impl Lasting {
        fn new(ctx: &ReplicaContext, life: Life) -> Result<Self, String> {
            life.make(ctx.index())?;
            Ok(Lasting { life })
        }
        fn call(&self, (hold, latch): (bool, Latch)) -> bool {
            if hold {
                latch.wait();
            }
            hold
        }
    }
    impl Drop for Lasting {
        fn drop(&mut self) {
            self.life.drops.fetch_add(1, Ordering::SeqCst);
        }
    }
    let life = Life::new(Replica1::Waits);
    let (tx, mut building) = tokio::sync::mpsc::unbounded_channel();
    *life.building.lock().unwrap() = Some(tx);
    let p = Lasting::bind(life.clone(), Input::<(bool, Latch)>::new())
        .deploy_with(DeployOptions::new().autoscale("Lasting", policy(1, 2, 0, 60_000)))
        .unwrap();
    let hold = Latch::default();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (p, hold) = (p.clone(), hold.clone());
            std::thread::spawn(move || p.call((true, hold)).unwrap())
        })
        .collect();
    assert_eq!(
        building.blocking_recv(),
        Some(1),
        "replica 1 is being built"
    );
    hold.open();
    for h in held {
        assert!(h.join().unwrap());
    }
    let dropper = std::thread::spawn(move || drop(p));
    life.latch.open();
    dropper.join().unwrap();
    assert_eq!((life.builds(), life.drops(), life.attempts()), (2, 2, 1));
}

/// An autoscaled step starting at 3 replicas whose replica 1 fails (an
/// `Err` or a panic): deploy fails naming replica 1, and replica 0, built,
/// is dropped.
#[tokio::test(start_paused = true)]
async fn replica_1_failing_at_deploy_fails_deploy_naming_it() {
    quiet_expected_panics();
    for how in [Replica1::Fails, Replica1::Panics] {
        let life = Life::new(how);
        let e = mortal(&life, policy(3, 4, 0, 0)).unwrap_err();
        match &e {
            DeployError::Build {
                step: "Mortal",
                replica: 1,
                source,
            } => {
                let want = if how == Replica1::Fails {
                    "cannot load its weights"
                } else {
                    "panicked on purpose"
                };
                assert!(source.to_string().contains(want), "{source}");
            }
            other => panic!("{other:?}"),
        }
        virtual_wait("the built replica is dropped", GUARD, || {
            life.drops() == life.builds()
        })
        .await;
        assert_eq!(
            (life.builds(), life.attempts()),
            (1, 1),
            "replica 2 is never built"
        );
    }
}

/// Scaling up to 3, replica 1's constructor keeps failing while replica 2
/// builds and joins; scaling back down gives up on replica 1 first (no
/// more attempts, health back to healthy) and drains replica 2.
#[tokio::test(start_paused = true)]
async fn a_replica_failing_to_build_is_given_up_first_when_scaling_down() {
    let life = Life::new(Replica1::Fails);
    let p = mortal(&life, policy(1, 3, 0, 0)).unwrap();
    let held: Vec<_> = (0..3)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.call_async(true).await })
        })
        .collect();
    virtual_wait(
        "replica 2 joins, replica 1 failing",
        Duration::from_secs(5),
        || replicas(&p) == (2, 3) && life.attempts() >= 2 && !p.health().is_healthy(),
    )
    .await;
    assert_eq!(p.health().degraded(), ["Mortal"]);
    // The held calls all went to replica 0 (the only one then).
    life.gate.release(3);
    for h in held {
        assert_eq!(h.await.unwrap().unwrap(), 0);
    }
    virtual_wait("down to one, healthy", Duration::from_secs(5), || {
        replicas(&p) == (1, 1) && p.health().is_healthy()
    })
    .await;
    let attempts = life.attempts();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(life.attempts(), attempts, "replica 1 still being retried");
    assert_eq!(p.health().steps[0].replicas_down, 0);
    // Replica 2 was drained and dropped; replica 0 serves.
    assert_eq!(p.call_async(false).await.unwrap(), 0);
    assert_eq!((life.builds(), life.drops()), (2, 1));
    drop(p);
    virtual_wait("all dropped", GUARD, || life.drops() == 2).await;
}

// ============================================================ 3. batching

/// Inputs that make `Batchy` misbehave for its whole batch.
const FEWER: i64 = -1;
const MORE: i64 = -2;
const NONE: i64 = -3;
const PANIC: i64 = -4;

#[derive(Clone, Default)]
struct BatchLog {
    /// Each batch the body ran on.
    batches: Arc<Mutex<Vec<Vec<i64>>>>,
    builds: Arc<AtomicUsize>,
    /// While set, the constructor fails.
    failing: Arc<AtomicBool>,
}

impl BatchLog {
    fn batches(&self) -> Vec<Vec<i64>> {
        self.batches.lock().unwrap().clone()
    }
    fn builds(&self) -> usize {
        self.builds.load(Ordering::SeqCst)
    }
}

/// A task-placed batched step: up to 3 calls, waiting 10 ms for more.
struct Batchy {
    log: BatchLog,
}

#[step(mode = "actors", placement = "task", batch(max_size = 3, wait_ms = 10))]
impl Batchy {
    fn new(log: BatchLog) -> Result<Self, String> {
        if log.failing.load(Ordering::SeqCst) {
            return Err("no weights yet".into());
        }
        log.builds.fetch_add(1, Ordering::SeqCst);
        Ok(Batchy { log })
    }
    async fn call(&self, xs: Vec<i64>) -> Vec<i64> {
        self.log.batches.lock().unwrap().push(xs.clone());
        let mut out: Vec<i64> = xs.iter().map(|x| x * 10).collect();
        if xs.contains(&FEWER) {
            out.pop();
        }
        if xs.contains(&MORE) {
            out.push(0);
        }
        if xs.contains(&NONE) {
            out.clear();
        }
        if xs.contains(&PANIC) {
            self.log.failing.store(true, Ordering::SeqCst);
            panic!("a batch panicked on purpose");
        }
        out
    }
}

fn batchy(log: &BatchLog) -> Pipeline<i64, i64> {
    Batchy::bind(log.clone(), Input::<i64>::new())
        .deploy_with(DeployOptions::new().runtime(tokio::runtime::Handle::current()))
        .unwrap()
}

/// Calls sent at once, in this order (they share batches in order).
async fn at_once(p: &Pipeline<i64, i64>, xs: &[i64]) -> Vec<Result<i64, PipelineError>> {
    futures::future::join_all(xs.iter().map(|&x| p.call_async(x))).await
}

/// A batched body returning a `Vec` of the wrong length fails each call of
/// that batch with a step error saying so: no panic, no hang, no rebuild,
/// and the replica serves on.
#[tokio::test(start_paused = true)]
async fn a_batch_answering_the_wrong_number_of_outputs_fails_its_calls_clearly() {
    let log = BatchLog::default();
    let p = batchy(&log);
    for (bad, got, of) in [(FEWER, 2, 3), (MORE, 4, 3), (NONE, 0, 3)] {
        let out = at_once(&p, &[5, bad, 6]).await;
        for r in &out {
            match r {
                Err(e @ PipelineError::Step { step: "Batchy", .. }) => {
                    let cause = e.source().expect("a cause").to_string();
                    assert!(
                        cause.contains(&format!("{got} outputs for {of} inputs")),
                        "{cause}"
                    );
                }
                other => panic!("batch with {bad}: {other:?}"),
            }
        }
        // The next batch is fine.
        let out = at_once(&p, &[1, 2, 3]).await;
        assert_eq!(
            out.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [10, 20, 30]
        );
    }
    // A batch of one returning nothing.
    let e = p.call_async(NONE).await.unwrap_err();
    assert!(
        e.source()
            .unwrap()
            .to_string()
            .contains("0 outputs for 1 inputs"),
        "{e}"
    );
    let h = &p.health().steps[0];
    assert_eq!((h.rebuilds, h.replicas_down, h.batches), (0, 0, 7));
    assert_eq!(log.builds(), 1);
    let m = &p.metrics()[0];
    assert_eq!(
        (m.requests, m.errors, m.queued, m.in_flight),
        (19, 10, 0, 0)
    );
}

/// A batch that panics fails its own calls only; the calls queued behind
/// it wait while the replica is rebuilt (its constructor failing for a
/// while: health says degraded) and are then answered.
#[tokio::test(start_paused = true)]
async fn a_panicking_batch_fails_only_itself_and_the_calls_behind_it_wait_for_the_rebuild() {
    quiet_expected_panics();
    let log = BatchLog::default();
    let p = batchy(&log);
    let calls: Vec<_> = [7, PANIC, 8, 1, 2, 3]
        .into_iter()
        .map(|x| {
            let p = p.clone();
            tokio::spawn(async move { p.call_async(x).await })
        })
        .collect();
    virtual_wait("the rebuild fails", Duration::from_secs(5), || {
        p.health().steps[0].replicas_down == 1
    })
    .await;
    assert_eq!(p.health().degraded(), ["Batchy"]);
    assert_eq!(p.metrics()[0].queued, 3, "the second batch waits");
    log.failing.store(false, Ordering::SeqCst);
    let out: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for r in &out[..3] {
        assert!(
            matches!(r, Err(PipelineError::Panicked { step: "Batchy", message }) if message.contains("on purpose")),
            "{r:?}"
        );
    }
    let rest: Vec<i64> = out[3..].iter().map(|r| *r.as_ref().unwrap()).collect();
    assert_eq!(rest, [10, 20, 30]);
    assert_eq!(log.batches(), [vec![7, PANIC, 8], vec![1, 2, 3]]);
    let h = &p.health().steps[0];
    assert_eq!(
        (h.rebuilds, h.replicas_down, h.batches, h.batched_calls),
        (1, 0, 2, 6)
    );
    assert!(p.health().is_healthy());
    assert_eq!(log.builds(), 2);
    let m = &p.metrics()[0];
    assert_eq!((m.queued, m.in_flight), (0, 0));
}

/// A slow-forming batch: up to 4 calls, waiting 1 s for more.
struct Slowly {
    log: BatchLog,
}

#[step(
    mode = "actors",
    placement = "task",
    batch(max_size = 4, wait_ms = 1000)
)]
impl Slowly {
    fn new(log: BatchLog) -> Self {
        Slowly { log }
    }
    async fn call(&self, xs: Vec<i64>) -> Vec<i64> {
        self.log.batches.lock().unwrap().push(xs.clone());
        xs.into_iter().map(|x| x + 100).collect()
    }
}

fn slowly(log: &BatchLog) -> Pipeline<i64, i64> {
    Slowly::bind(log.clone(), Input::<i64>::new())
        .deploy_with(DeployOptions::new().runtime(tokio::runtime::Handle::current()))
        .unwrap()
}

/// Waits until `n` calls are inside the step and none is left in its
/// mailbox: the replica holds them all in its forming batch.
async fn all_taken(p: &Pipeline<i64, i64>, n: u64) {
    virtual_wait(
        "calls taken into the batch",
        Duration::from_millis(100),
        || {
            let m = &p.metrics()[0];
            m.in_flight == n && m.queued == 0
        },
    )
    .await;
}

/// Callers who give up while their calls sit in a forming batch are left
/// out of it; the others are answered when it leaves; when every caller
/// gave up the body does not run at all.
#[tokio::test(start_paused = true)]
async fn callers_giving_up_in_a_forming_batch_are_left_out() {
    let log = BatchLog::default();
    let p = slowly(&log);
    let call = |x: i64| {
        let p = p.clone();
        tokio::spawn(async move { p.call_async(x).await })
    };
    let a = call(1);
    let b = call(2);
    let c = call(3);
    all_taken(&p, 3).await;
    b.abort();
    assert!(b.await.unwrap_err().is_cancelled());
    assert_eq!(a.await.unwrap().unwrap(), 101);
    assert_eq!(c.await.unwrap().unwrap(), 103);
    assert_eq!(log.batches(), [vec![1, 3]]);

    // Every caller gives up.
    let d = call(4);
    let e = call(5);
    all_taken(&p, 2).await;
    d.abort();
    e.abort();
    let _ = (d.await, e.await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        log.batches().len(),
        1,
        "the body ran for nobody: {:?}",
        log.batches()
    );
    // The replica serves on.
    assert_eq!(p.call_async(6).await.unwrap(), 106);
    assert_eq!(log.batches(), [vec![1, 3], vec![6]]);
    let h = &p.health().steps[0];
    assert_eq!((h.batches, h.batched_calls), (2, 3));
    let m = &p.metrics()[0];
    assert_eq!((m.queued, m.in_flight), (0, 0));
}

/// A deadline passing while the call sits in a forming batch: the caller
/// gets `DeadlineExceeded` at its deadline, not when the batch leaves.
/// The pipeline runs on the test's paused clock
/// (`DeployOptions::runtime`), so its deadline is virtual time too.
#[tokio::test(start_paused = true)]
async fn a_deadline_in_a_forming_batch_is_kept() {
    let log = BatchLog::default();
    let p = slowly(&log);
    let start = Instant::now();
    let r = p.call_async_timeout(1, Duration::from_millis(200)).await;
    assert!(
        matches!(r, Err(PipelineError::DeadlineExceeded { .. })),
        "a 200 ms deadline, a batch leaving after 1000 ms: got {r:?} after {:?} of virtual time",
        start.elapsed()
    );
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(log.batches().is_empty(), "{:?}", log.batches());
    let m = &p.metrics()[0];
    assert_eq!((m.queued, m.in_flight), (0, 0));
}

/// The same without batching: a step that takes 10 s of (virtual) time,
/// called with a 5 s deadline on the paused clock it was deployed onto.
#[tokio::test(start_paused = true)]
async fn a_deadline_follows_the_chosen_runtimes_clock() {
    #[step(mode = "actors", placement = "task")]
    async fn ten_seconds(x: u64) -> u64 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        x
    }
    let p = ten_seconds(Input::<u64>::new())
        .deploy_with(DeployOptions::new().runtime(tokio::runtime::Handle::current()))
        .unwrap();
    let start = Instant::now();
    let r = p.call_async_timeout(1, Duration::from_secs(5)).await;
    assert!(
        matches!(r, Err(PipelineError::DeadlineExceeded { .. })),
        "a 5 s deadline on a 10 s call: got {r:?} after {:?} of virtual time",
        start.elapsed()
    );
}

/// `max_size = 1` never waits for company, whatever `wait_ms` says.
#[tokio::test(start_paused = true)]
async fn a_batch_of_at_most_one_never_waits() {
    struct Single;
    #[step(
        mode = "actors",
        placement = "task",
        batch(max_size = 1, wait_ms = 60000)
    )]
    impl Single {
        fn new() -> Self {
            Single
        }
        async fn call(&self, xs: Vec<u64>) -> Vec<u64> {
            assert_eq!(xs.len(), 1);
            xs
        }
    }
    let p = Single::bind(Input::<u64>::new())
        .deploy_with(DeployOptions::new().runtime(tokio::runtime::Handle::current()))
        .unwrap();
    let start = Instant::now();
    assert_eq!(p.call_async(9).await.unwrap(), 9);
    let out = futures::future::join_all((0..10u64).map(|x| p.call_async(x))).await;
    assert_eq!(
        out.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "a batch of one waited");
    let h = &p.health().steps[0];
    assert_eq!((h.batches, h.batched_calls), (11, 11));
}

/// `wait_ms = u64::MAX`: the deadline arithmetic must not overflow; a
/// full batch leaves at once; a caller timing out in the forming batch
/// leaves a slot that the next call fills.
#[tokio::test(start_paused = true)]
async fn a_huge_wait_ms_neither_overflows_nor_wedges_the_replica() {
    struct Forever {
        log: BatchLog,
    }
    #[step(
        mode = "actors",
        placement = "task",
        batch(max_size = 2, wait_ms = 18446744073709551615)
    )]
    impl Forever {
        fn new(log: BatchLog) -> Self {
            Forever { log }
        }
        async fn call(&self, xs: Vec<i64>) -> Vec<i64> {
            self.log.batches.lock().unwrap().push(xs.clone());
            xs
        }
    }
    let log = BatchLog::default();
    let p = Forever::bind(log.clone(), Input::<i64>::new())
        .deploy_with(DeployOptions::new().runtime(tokio::runtime::Handle::current()))
        .unwrap();
    let out = at_once(&p, &[1, 2]).await;
    assert_eq!(
        out.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        [1, 2]
    );
    // A lone call waits (for ever) for company; its caller gives up.
    let lone = {
        let p = p.clone();
        tokio::spawn(async move { p.call_async(3).await })
    };
    virtual_wait("the lone call is taken", Duration::from_millis(100), || {
        let m = &p.metrics()[0];
        m.in_flight == 1 && m.queued == 0
    })
    .await;
    lone.abort();
    assert!(lone.await.unwrap_err().is_cancelled());
    // The given-up call still takes a place in the forming batch; the
    // next call fills it and is answered.
    assert_eq!(p.call_async(4).await.unwrap(), 4);
    assert_eq!(log.batches(), [vec![1, 2], vec![4]]);
    assert!(p.health().is_healthy());
    assert_eq!(p.health().steps[0].rebuilds, 0);
}

/// A full mailbox refuses at once with `Overloaded`, counted; after a
/// burst far past the bound the queue gauge and in-flight count are 0
/// again, batched or not.
#[tokio::test(start_paused = true)]
async fn overload_is_exact_and_the_gauges_return_to_zero() {
    // Batched: bound 2, batches of 2, the body held at the gate.
    struct Gated {
        gate: Gate,
    }
    #[step(mode = "actors", placement = "task", batch(max_size = 2, wait_ms = 5))]
    impl Gated {
        fn new(gate: Gate) -> Self {
            Gated { gate }
        }
        async fn call(&self, xs: Vec<u64>) -> Vec<u64> {
            self.gate.pass().await;
            xs
        }
    }
    let gate = Gate::closed();
    let p = Gated::bind(gate.clone(), Input::<u64>::new())
        .deploy_with(
            DeployOptions::new()
                .runtime(tokio::runtime::Handle::current())
                .queue_bound("Gated", 2),
        )
        .unwrap();
    gate.release(usize::MAX >> 4);
    // Ten sent in one poll: two fit the mailbox, eight are refused.
    let out = futures::future::join_all((0..10u64).map(|x| p.call_async(x))).await;
    let answered: Vec<u64> = out
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(answered, [0, 1]);
    for r in &out[2..] {
        assert!(
            matches!(r, Err(PipelineError::Overloaded { step: "Gated" })),
            "{r:?}"
        );
    }
    let m = &p.metrics()[0];
    assert_eq!(
        (m.requests, m.errors, m.overloaded, m.queued, m.in_flight),
        (10, 8, 8, 0, 0)
    );

    // Not batched: bound 1, one call running, one queued, one dropped
    // while queued (it keeps its slot, as documented), one refused.
    let gate = Gate::closed();
    let p = Held::bind(gate.clone(), Input::<u64>::new())
        .deploy_with(
            DeployOptions::new()
                .runtime(tokio::runtime::Handle::current())
                .queue_bound("Held", 1),
        )
        .unwrap();
    let running = {
        let p = p.clone();
        tokio::spawn(async move { p.call_async(1).await })
    };
    virtual_wait("the first call runs", Duration::from_millis(100), || {
        let m = &p.metrics()[0];
        m.in_flight == 1 && m.queued == 0
    })
    .await;
    let queued = {
        let p = p.clone();
        tokio::spawn(async move { p.call_async(2).await })
    };
    virtual_wait("the second call queues", Duration::from_millis(100), || {
        p.metrics()[0].queued == 1
    })
    .await;
    queued.abort();
    assert!(queued.await.unwrap_err().is_cancelled());
    assert!(matches!(
        p.call_async(3).await,
        Err(PipelineError::Overloaded { step: "Held" })
    ));
    assert_eq!(p.metrics()[0].queued, 1, "the dropped call holds its slot");
    gate.release(1);
    assert_eq!(running.await.unwrap().unwrap(), 2);
    // The dropped call is passed by (its body never runs: no permit is
    // taken), and the slot is free again.
    virtual_wait("the slot frees", Duration::from_millis(100), || {
        p.metrics()[0].queued == 0
    })
    .await;
    gate.release(1);
    assert_eq!(p.call_async(4).await.unwrap(), 5);
    let m = &p.metrics()[0];
    assert_eq!((m.queued, m.in_flight, m.overloaded), (0, 0, 1));
    assert_eq!(gate.0.available_permits(), 0, "the dropped call's body ran");
}
