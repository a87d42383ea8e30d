//! Tensors between steps: [`Tensor`], a `tch::Tensor` that can fan out, and
//! the [`stack`] / [`unstack`] pair that batched model steps use to turn
//! their callers' tensors into one batch and back.

use std::fmt;
use std::ops::{Deref, DerefMut};

use tch::TchError;

/// A `tch::Tensor` that steps can pass around and fan out.
///
/// A plain `tch::Tensor` flows along a chain as it is. For a fan-out point
/// (`node.shared()`) the output must be `Clone`, which `tch::Tensor` is not;
/// this wrapper clones the way PyTorch passes tensors around: the clone
/// shares the storage ([`tch::Tensor::shallow_clone`]), so fanning a
/// preprocessed image out to several models copies no pixels. It derefs to
/// `tch::Tensor` for every tensor operation.
///
/// ```
/// use pipeline_core::torch::{tch, Tensor};
///
/// let t = Tensor::from(tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]));
/// let u = t.clone();                      // shares storage
/// assert_eq!(u.size(), vec![3]);          // any tch method, through Deref
/// assert_eq!(f64::try_from(u.sum(tch::Kind::Float))?, 6.0);
/// let inner: tch::Tensor = t.into_inner();
/// # Ok::<(), tch::TchError>(())
/// ```
pub struct Tensor(tch::Tensor);

impl Tensor {
    /// The `tch::Tensor` inside.
    pub fn into_inner(self) -> tch::Tensor {
        self.0
    }
}

impl Clone for Tensor {
    fn clone(&self) -> Self {
        Tensor(self.0.shallow_clone())
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Shape and kind, not the values: tensors are large.
        f.debug_struct("Tensor")
            .field("size", &self.0.size())
            .field("kind", &self.0.kind())
            .field("device", &self.0.device())
            .finish()
    }
}

impl Deref for Tensor {
    type Target = tch::Tensor;
    fn deref(&self) -> &tch::Tensor {
        &self.0
    }
}

impl DerefMut for Tensor {
    fn deref_mut(&mut self) -> &mut tch::Tensor {
        &mut self.0
    }
}

impl From<tch::Tensor> for Tensor {
    fn from(t: tch::Tensor) -> Self {
        Tensor(t)
    }
}

impl From<Tensor> for tch::Tensor {
    fn from(t: Tensor) -> Self {
        t.0
    }
}

/// A tensor crosses to a remote worker (`#[step(remote)]`) as its kind,
/// its shape and its raw bytes (row-major, from the CPU), not as numbers:
/// a `[3, 224, 224]` f32 image is 602,112 bytes plus a few for the header.
/// It arrives on the CPU; a model step moves it to its replica's device.
///
/// ```
/// use pipeline_core::torch::{tch, Tensor};
/// use pipeline_core::wire::{wire_type, Wire};
///
/// let wire: Wire<(Tensor,), Tensor> = Wire::new((wire_type::<Tensor>(),), wire_type());
/// let t = Tensor::from(tch::Tensor::from_slice(&[1.5f32, -2.0, 3.0, 4.0]).view([2, 2]));
/// let bytes = wire.encode_inputs(&(t.clone(),))?;
/// assert!(bytes.len() < 16 + 16 + 4 * 4);
/// let (back,) = wire.decode_inputs(&bytes)?;
/// assert_eq!(back.size(), [2, 2]);
/// assert_eq!(back.kind(), tch::Kind::Float);
/// assert!(back.equal(&t));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl serde::Serialize for Tensor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeStruct};
        let t = self.0.to_device(tch::Device::Cpu).contiguous();
        let kind = t.f_kind().map_err(S::Error::custom)?;
        // Refused here, naming the kind, rather than sent and refused by a
        // receiver that cannot name it back (complex kinds, say).
        let kind_name = kind_name(kind).ok_or_else(|| {
            S::Error::custom(format!(
                "a tensor of kind {kind:?} cannot cross: the kinds that can are {}",
                KINDS.map(|(_, name)| name).join(", ")
            ))
        })?;
        let numel = t.numel();
        let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, numel)
            .map_err(S::Error::custom)?;
        let mut out = s.serialize_struct("Tensor", 3)?;
        out.serialize_field("kind", kind_name)?;
        out.serialize_field("shape", &t.size())?;
        out.serialize_field("data", serde_bytes::Bytes::new(&data))?;
        out.end()
    }
}

impl<'de> serde::Deserialize<'de> for Tensor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(serde::Deserialize)]
        #[serde(rename = "Tensor")]
        struct Wire {
            kind: String,
            shape: Vec<i64>,
            #[serde(with = "serde_bytes")]
            data: Vec<u8>,
        }
        let w = Wire::deserialize(d)?;
        let kind = kind_from_name(&w.kind)
            .ok_or_else(|| D::Error::custom(format!("unknown tensor kind `{}`", w.kind)))?;
        let numel = w
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
            .ok_or_else(|| D::Error::custom(format!("bad tensor shape {:?}", w.shape)))?;
        let want = numel.saturating_mul(kind.elt_size_in_bytes());
        if w.data.len() != want {
            return Err(D::Error::custom(format!(
                "tensor data is {} bytes; shape {:?} of {} needs {want}",
                w.data.len(),
                w.shape,
                w.kind
            )));
        }
        tch::Tensor::f_from_data_size(&w.data, &w.shape, kind)
            .map(Tensor)
            .map_err(D::Error::custom)
    }
}

/// The kinds a tensor may cross with, by name.
const KINDS: [(tch::Kind, &str); 10] = [
    (tch::Kind::Uint8, "u8"),
    (tch::Kind::Int8, "i8"),
    (tch::Kind::Int16, "i16"),
    (tch::Kind::Int, "i32"),
    (tch::Kind::Int64, "i64"),
    (tch::Kind::Half, "f16"),
    (tch::Kind::BFloat16, "bf16"),
    (tch::Kind::Float, "f32"),
    (tch::Kind::Double, "f64"),
    (tch::Kind::Bool, "bool"),
];

fn kind_name(kind: tch::Kind) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, name)| *name)
}

fn kind_from_name(name: &str) -> Option<tch::Kind> {
    KINDS.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
}

/// Stacks a batch's tensors into one along a new first dimension: `n`
/// tensors of shape `s` give one of shape `[n, ..s]`, on the first tensor's
/// device (the others are moved there). Fails on an empty batch or
/// mismatched shapes, naming them, rather than panicking.
///
/// ```
/// use pipeline_core::torch::{stack, tch, unstack};
///
/// let xs = vec![tch::Tensor::from_slice(&[1i64, 2]), tch::Tensor::from_slice(&[3i64, 4])];
/// let batch = stack(&xs)?;
/// assert_eq!(batch.size(), vec![2, 2]);
/// let back = unstack(&batch);
/// assert_eq!(back.len(), 2);
/// assert_eq!(Vec::<i64>::try_from(&*back[1])?, vec![3, 4]);
///
/// let bad = vec![tch::Tensor::from_slice(&[1i64]), tch::Tensor::from_slice(&[1i64, 2])];
/// assert!(stack(&bad).unwrap_err().to_string().contains("[1] and [2]"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn stack<T: AsRef<tch::Tensor>>(tensors: &[T]) -> Result<tch::Tensor, TchError> {
    let first = tensors
        .first()
        .ok_or_else(|| TchError::Shape("stack: the batch is empty".into()))?
        .as_ref();
    let (size, device) = (first.size(), first.device());
    if let Some(other) = tensors.iter().map(AsRef::as_ref).find(|t| t.size() != size) {
        return Err(TchError::Shape(format!(
            "stack: every tensor of a batch needs the same shape, got {:?} and {:?}",
            size,
            other.size()
        )));
    }
    let on_device: Vec<tch::Tensor> = tensors
        .iter()
        .map(|t| t.as_ref().to_device(device))
        .collect();
    tch::Tensor::f_stack(&on_device, 0)
}

/// Splits a batch along its first dimension: the inverse of [`stack`]. Each
/// part is a view sharing the batch's storage (no copy); see [`stack`] for
/// an example.
pub fn unstack(batch: &tch::Tensor) -> Vec<Tensor> {
    match batch.size().first() {
        Some(&n) => (0..n).map(|i| Tensor(batch.get(i))).collect(),
        None => Vec::new(),
    }
}

impl AsRef<tch::Tensor> for Tensor {
    fn as_ref(&self) -> &tch::Tensor {
        &self.0
    }
}
