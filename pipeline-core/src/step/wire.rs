//! How a `remote` step's inputs and output cross to a worker process: each
//! value is serde-encoded with `postcard` (a compact binary format: a
//! `Vec<u8>` or a tensor's data is its length and its bytes, no JSON
//! numbers). `#[step(remote)]` checks every input and the output type with
//! [`wire_type`] (one compile error at the type if it is not serde) and
//! builds a [`Wire`] from the checked pieces.

use std::any::type_name;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A type that can cross to a worker: serde-serializable and
/// deserializable. Implemented for every such type.
///
/// (Its serde bounds sit on the blanket impl, not on the trait, and the
/// compiler is told not to look through that impl: a type missing both
/// `Serialize` and `Deserialize` is this one error, not two.)
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross to a remote worker: a `#[step(remote)]` step's inputs and output must be serde types",
    label = "not `serde::Serialize + serde::de::DeserializeOwned`",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it (tensors: `pipeline_core::torch::Tensor` is one), or remove `remote` from the step"
)]
pub trait WireType: Send + Sized + 'static {
    /// Appends the value, postcard-encoded.
    fn encode_to(&self, buf: &mut Vec<u8>) -> Result<(), WireError>;
    /// Reads one value from the front of `bytes`; returns the rest.
    fn decode_from(bytes: &[u8]) -> Result<(Self, &[u8]), WireError>;
}

#[diagnostic::do_not_recommend]
impl<T> WireType for T
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    fn encode_to(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        let taken = std::mem::take(buf);
        *buf = postcard::to_extend(self, taken).map_err(|source| WireError::Encode {
            ty: type_name::<T>(),
            source,
        })?;
        Ok(())
    }

    fn decode_from(bytes: &[u8]) -> Result<(Self, &[u8]), WireError> {
        postcard::take_from_bytes(bytes).map_err(|source| WireError::Decode {
            ty: type_name::<T>(),
            source,
        })
    }
}

/// The wire format's name and version, part of a remote step's
/// fingerprint: a worker and a pipeline must agree on it.
pub const WIRE_FORMAT: &str = "postcard-1";

/// Why a value could not cross.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Encoding failed (a type whose `Serialize` refuses, say).
    #[error("could not encode `{ty}`")]
    Encode {
        /// The type.
        ty: &'static str,
        /// postcard's error.
        #[source]
        source: postcard::Error,
    },
    /// The bytes are not a `ty` in this format.
    #[error("could not decode `{ty}` from the bytes received")]
    Decode {
        /// The type.
        ty: &'static str,
        /// postcard's error.
        #[source]
        source: postcard::Error,
    },
    /// Bytes were left over after the last value.
    #[error("{0} bytes left over after the last value")]
    Trailing(usize),
    /// The type's own `Serialize` or `Deserialize` panicked.
    #[error("`{ty}`'s Serialize or Deserialize panicked: {message}")]
    Panicked {
        /// The type.
        ty: &'static str,
        /// The panic's message.
        message: String,
    },
}

/// Runs `f`, the user's `Serialize` or `Deserialize` underneath: a panic
/// in it is a [`WireError::Panicked`], never an unwind into the runtime
/// (a worker's request loop, a caller's `call`).
fn caught<T>(ty: &'static str, f: impl FnOnce() -> Result<T, WireError>) -> Result<T, WireError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(WireError::Panicked {
            ty,
            message: crate::error::panic_message(&*payload),
        })
    })
}

/// How one type crosses: encode appends to a buffer; decode reads one value
/// from the front of a slice and returns the rest.
pub struct WireFns<T> {
    encode: fn(&T, &mut Vec<u8>) -> Result<(), WireError>,
    decode: Decode<T>,
}

/// Reads one `T` from the front of the bytes; returns it and the rest.
type Decode<T> = fn(&[u8]) -> Result<(T, &[u8]), WireError>;

impl<T> Clone for WireFns<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for WireFns<T> {}

impl<T> fmt::Debug for WireFns<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WireFns<{}>", type_name::<T>())
    }
}

/// Checks that `T` can cross (one error at the type if not) and says how.
pub fn wire_type<T: WireType>() -> WireFns<T> {
    WireFns {
        encode: T::encode_to,
        decode: T::decode_from,
    }
}

/// A step's inputs tuple, as checked pieces: `(WireFns<A>, WireFns<B>)`
/// encodes `(A, B)`. The encoding is postcard's for the tuple itself.
pub trait WireTuple<I>: Send + Sync + 'static {
    /// Appends `inputs`.
    fn encode(&self, inputs: &I, buf: &mut Vec<u8>) -> Result<(), WireError>;
    /// Reads the inputs back.
    fn decode<'b>(&self, bytes: &'b [u8]) -> Result<(I, &'b [u8]), WireError>;
}

macro_rules! wire_tuples {
    ($(($($t:ident $i:tt),+))*) => {$(
        impl<$($t: 'static),+> WireTuple<($($t,)+)> for ($(WireFns<$t>,)+) {
            fn encode(&self, inputs: &($($t,)+), buf: &mut Vec<u8>) -> Result<(), WireError> {
                $((self.$i.encode)(&inputs.$i, buf)?;)+
                Ok(())
            }
            #[allow(non_snake_case)]
            fn decode<'b>(&self, bytes: &'b [u8]) -> Result<(($($t,)+), &'b [u8]), WireError> {
                $(let ($t, bytes) = (self.$i.decode)(bytes)?;)+
                Ok((($($t,)+), bytes))
            }
        }
    )*};
}

wire_tuples! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
}

/// How a `remote` step's calls cross: its inputs one way, its output back.
pub struct Wire<I, O> {
    inputs: Box<dyn WireTuple<I>>,
    output: WireFns<O>,
    /// The crate (name and version) that defines the step.
    origin: &'static str,
}

impl<I, O> fmt::Debug for Wire<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wire<{}, {}>", type_name::<I>(), type_name::<O>())
    }
}

impl<I: 'static, O: 'static> Wire<I, O> {
    /// From checked pieces (see [`wire_type`]).
    pub fn new(inputs: impl WireTuple<I>, output: WireFns<O>) -> Self {
        Wire {
            inputs: Box::new(inputs),
            output,
            origin: "",
        }
    }

    /// Names the crate that defines the step (`#[step(remote)]` gives its
    /// package name and version), which the fingerprint includes: type
    /// names alone do not change when a struct's fields do, and postcard
    /// does not describe a value's layout.
    pub fn defined_in(mut self, origin: &'static str) -> Self {
        self.origin = origin;
        self
    }

    /// The inputs, encoded.
    pub fn encode_inputs(&self, inputs: &I) -> Result<Vec<u8>, WireError> {
        caught(type_name::<I>(), || {
            let mut buf = Vec::new();
            self.inputs.encode(inputs, &mut buf)?;
            Ok(buf)
        })
    }

    /// The inputs, decoded (all the bytes must be used).
    pub fn decode_inputs(&self, bytes: &[u8]) -> Result<I, WireError> {
        let (inputs, rest) = caught(type_name::<I>(), || self.inputs.decode(bytes))?;
        whole(rest)?;
        Ok(inputs)
    }

    /// The output, encoded.
    pub fn encode_output(&self, output: &O) -> Result<Vec<u8>, WireError> {
        caught(type_name::<O>(), || {
            let mut buf = Vec::new();
            (self.output.encode)(output, &mut buf)?;
            Ok(buf)
        })
    }

    /// The output, decoded (all the bytes must be used).
    pub fn decode_output(&self, bytes: &[u8]) -> Result<O, WireError> {
        let (output, rest) = caught(type_name::<O>(), || (self.output.decode)(bytes))?;
        whole(rest)?;
        Ok(output)
    }

    /// What a worker and a pipeline must agree on to talk about this step:
    /// the input and output types and the wire format.
    pub fn fingerprint(&self) -> String {
        format!(
            "inputs={}; output={}; wire={WIRE_FORMAT}; crate={}",
            type_name::<I>(),
            type_name::<O>(),
            self.origin
        )
    }

    /// A short, stable digest of [`fingerprint`](Self::fingerprint) (FNV-1a,
    /// 16 hex digits), sent with every call.
    pub fn fingerprint_digest(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.fingerprint().bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}

fn whole(rest: &[u8]) -> Result<(), WireError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(WireError::Trailing(rest.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_encode_as_the_tuple_itself_and_round_trip() {
        let wire: Wire<(u32, String), Vec<u8>> =
            Wire::new((wire_type::<u32>(), wire_type::<String>()), wire_type());
        let inputs = (7u32, "seven".to_string());
        let bytes = wire.encode_inputs(&inputs).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&inputs).unwrap());
        assert_eq!(wire.decode_inputs(&bytes).unwrap(), inputs);
        let out = wire.encode_output(&vec![1, 2, 3]).unwrap();
        assert_eq!(wire.decode_output(&out).unwrap(), [1, 2, 3]);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let wire: Wire<(u64,), String> = Wire::new((wire_type::<u64>(),), wire_type());
        assert!(matches!(
            wire.decode_inputs(&[0xff]),
            Err(WireError::Decode { .. })
        ));
        let mut long = wire.encode_inputs(&(1,)).unwrap();
        long.push(0);
        assert!(matches!(
            wire.decode_inputs(&long),
            Err(WireError::Trailing(1))
        ));
        assert!(wire.decode_output(&[5, b'a']).is_err());
    }
}
