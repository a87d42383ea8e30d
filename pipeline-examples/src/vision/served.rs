//! The seed's image ensemble as the HTTP examples serve it: the request's
//! body (an image's bytes) -> preprocess (shared) -> resnet18 and resnet34
//! -> combine.

use std::path::Path;

use pipeline_core::http::HttpRequest;
use pipeline_core::prelude::*;

use super::{classifier, combine, model_specs, preprocess};

/// The request's body: the image bytes.
#[step]
pub fn image_body(request: HttpRequest) -> Vec<u8> {
    request.body().to_vec()
}

/// The ensemble behind `POST /classify` in `http_ensemble` and `dashboard`:
/// weights from `dir` (`resnet18.safetensors`, `resnet34.safetensors`), or
/// seeded ones without.
///
/// ```no_run
/// use pipeline_core::prelude::*;
///
/// let p = pipeline_examples::vision::served::ensemble(None).deploy()?;
/// # Ok::<(), pipeline_core::DeployError>(())
/// ```
pub fn ensemble(dir: Option<&Path>) -> impl Upstream<Input = HttpRequest, Output = Vec<i64>> {
    let pre = preprocess(image_body(Input::<HttpRequest>::new())).shared();
    let models = model_specs(dir).map(|m| classifier(m, pre.clone()));
    combine(models)
}
