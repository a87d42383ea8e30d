//! Seed 001, typed: Ray Serve's deployment graph `Preprocessor -> Model ->
//! Postprocessor` behind an HTTP endpoint (feature `http`).
//!
//! In the seed, the Starlette `Request` object itself is bound into the
//! graph and handed to the first deployment, which awaits
//! `request.json()` there; the request lives in the proxy's process and its
//! body stream can be read once, so passing it along to another actor cannot
//! work. Here the ingress reads the body first (within its size limit) and
//! the graph's input is an [`HttpRequest`] value: headers, query and the
//! buffered body, cloned like any input. The first step turns it into a
//! typed value (or a [`BadRequest`], answered 400 / 422), and every later
//! edge is typed and checked by the compiler.
//!
//! ```no_run
//! use pipeline_core::prelude::*;
//! use pipeline_core::http::Ingress;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let p = pipeline_examples::seed001::graph().deploy()?;
//! Ingress::new().request("/predict", p).serve("127.0.0.1:8000").await?;
//! // curl -d '{"values": [1, 2, 3]}' http://127.0.0.1:8000/predict
//! # Ok(()) }
//! ```

use pipeline_core::http::{BadRequest, HttpRequest};
use pipeline_core::prelude::*;

/// The JSON body clients send.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct PredictRequest {
    /// The raw features.
    pub values: Vec<f32>,
}

/// What the endpoint answers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prediction {
    /// `"positive"` or `"negative"`.
    pub label: String,
    /// The model's score.
    pub score: f32,
    /// Which replica answered.
    pub replica: usize,
}

/// Reads the request: JSON body `{"values": [..]}`, optional `?scale=` query
/// parameter; standardises the values. Bad input is a [`BadRequest`].
#[step(mode = "tasks")]
pub fn preprocessor(request: HttpRequest) -> Result<Vec<f32>, BadRequest> {
    let body: PredictRequest = request.json()?;
    if body.values.is_empty() {
        return Err(BadRequest::unprocessable("`values` must not be empty"));
    }
    let scale = match request.query_param("scale") {
        Some(s) => s
            .parse::<f32>()
            .map_err(|_| BadRequest::unprocessable(format!("`scale` is not a number: {s:?}")))?,
        None => 1.0,
    };
    let n = body.values.len() as f32;
    let mean = body.values.iter().sum::<f32>() / n;
    Ok(body.values.iter().map(|v| (v - mean) * scale).collect())
}

/// The model: a weighted sum, one per replica.
#[derive(Debug)]
pub struct Model {
    weight: f32,
    replica: usize,
}

#[step(mode = "actors", replicas = 2)]
impl Model {
    /// Builds a replica.
    pub fn new(ctx: &ReplicaContext, weight: f32) -> Self {
        Model {
            weight,
            replica: ctx.index(),
        }
    }

    /// Scores the features.
    pub fn call(&self, features: Vec<f32>) -> (f32, usize) {
        let score = features
            .iter()
            .enumerate()
            .map(|(i, x)| x * self.weight * (i as f32 + 1.0))
            .sum();
        (score, self.replica)
    }
}

/// Turns a score into the answer.
#[step]
pub fn postprocessor(scored: (f32, usize)) -> Prediction {
    let (score, replica) = scored;
    Prediction {
        label: if score >= 0.0 { "positive" } else { "negative" }.to_string(),
        score,
        replica,
    }
}

/// `Preprocessor -> Model -> Postprocessor`, read left to right with
/// `.then()` as in Ray's `.bind().then()`.
pub fn graph() -> impl Upstream<Input = HttpRequest, Output = Prediction> {
    Input::<HttpRequest>::new()
        .then(preprocessor)
        .then(|features| Model::bind(0.5, features))
        .then(postprocessor)
}
