//! Image bytes to a normalized `[3, 224, 224]` tensor, the seed's
//! torchvision chain done in Rust:
//!
//! ```text
//! PIL.Image.open(bytes).convert("RGB")        decode (PNG or JPEG), drop alpha
//! transforms.Resize(224)                      shorter side to 224, bilinear (PIL's, antialiased)
//! transforms.CenterCrop(224)                  224 x 224 from the middle
//! transforms.ToTensor()                       u8 -> f32 / 255, HWC -> CHW
//! transforms.Normalize(mean, std)             ImageNet mean and std, per channel
//! ```
//!
//! The exact transform: the output of `Resize(224)` has its shorter side at
//! 224 and its longer side at `floor(224 * long / short)` (torchvision's
//! rule); the resampling is Pillow's `BILINEAR` filter, reproduced here step
//! for step (separable, support scaled by the reduction factor, so it
//! antialiases when shrinking; 22-bit fixed-point coefficients; horizontal
//! pass then vertical; each pass rounded and clamped to `u8`). `CenterCrop`
//! puts the crop's corner at `round((size - 224) / 2)`, rounding half to even
//! as Python does. For PNG input the result equals torchvision's bit for
//! bit; JPEG decoders may differ from libjpeg by one level on some pixels.

use image::{DynamicImage, RgbImage};

/// The side of the square the models take.
pub const SIZE: usize = 224;
/// ImageNet channel means (torchvision's `Normalize`).
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Why bytes could not become a model input.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The bytes are not a PNG or JPEG image the decoder can read.
    #[error("cannot decode the image ({len} bytes; PNG and JPEG are supported): {source}")]
    Decode {
        /// How many bytes came in.
        len: usize,
        /// The decoder's error.
        source: image::ImageError,
    },
    /// The image is too large to decode.
    #[error("the image is {width}x{height}: decoded, it would take more than {limit_mib} MiB")]
    TooLarge {
        /// Its width.
        width: u64,
        /// Its height.
        height: u64,
        /// The limit, MiB.
        limit_mib: usize,
    },
    /// libjpeg could not decode these JPEG bytes.
    #[error("cannot decode the JPEG image ({len} bytes): {reason}")]
    Jpeg {
        /// How many bytes came in.
        len: usize,
        /// libjpeg's reason.
        reason: String,
    },
    /// The image decodes but has no pixels to resize.
    #[error("the image is {width}x{height}: it has no pixels to resize")]
    Empty {
        /// Decoded width.
        width: u32,
        /// Decoded height.
        height: u32,
    },
}

/// Decodes PNG or JPEG bytes and converts to 8-bit RGB, dropping alpha
/// (Pillow's `convert("RGB")`: alpha is discarded, not composited).
///
/// JPEG goes through libjpeg-turbo's decoder (the `mozjpeg` crate), which
/// Pillow uses too, with Pillow's settings (accurate integer IDCT, smooth
/// chroma upsampling), so JPEG pixels match PIL's exactly; CMYK and YCCK
/// JPEGs are read as inverted CMYK and turned into RGB with Pillow's
/// formula. PNG goes through the `image` crate.
/// Images whose pixels would take more than 512 MiB are refused before
/// decoding ([`PreprocessError::TooLarge`]).
///
/// ```
/// use pipeline_examples::vision::transform::decode_rgb;
/// assert!(decode_rgb(b"not an image").unwrap_err().to_string().contains("cannot decode"));
/// ```
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, PreprocessError> {
    decode(bytes, false).map(Pixels::into_rgb)
}

/// [`decode_rgb`], but an image with alpha (RGBA or grey + alpha PNG) comes
/// back as RGBA.
fn decode_keeping_alpha(bytes: &[u8]) -> Result<Pixels, PreprocessError> {
    decode(bytes, true)
}

fn decode(bytes: &[u8], keep_alpha: bool) -> Result<Pixels, PreprocessError> {
    let pixels = match jpeg::decode(bytes) {
        jpeg::Decoded::Rgb(rgb) => Pixels::Rgb(rgb),
        jpeg::Decoded::Failed(reason) => {
            return Err(PreprocessError::Jpeg {
                len: bytes.len(),
                reason,
            })
        }
        jpeg::Decoded::TooLarge(width, height) => return Err(too_large(width, height)),
        jpeg::Decoded::NotForLibjpeg => {
            // The decoder's own limit counts the source's bytes (a 1-bit grey
            // PNG's are few); the RGB (or RGBA) made from it must fit too.
            if let Some((width, height)) = image_size(bytes) {
                let per_pixel = if keep_alpha { 4 } else { 3 };
                if width.saturating_mul(height).saturating_mul(per_pixel) > MAX_DECODED_BYTES {
                    return Err(too_large(width, height));
                }
            }
            let image = image::load_from_memory(bytes).map_err(|source| match source {
                image::ImageError::Limits(_) => match image_size(bytes) {
                    Some((width, height)) => too_large(width, height),
                    None => PreprocessError::Decode {
                        len: bytes.len(),
                        source,
                    },
                },
                source => PreprocessError::Decode {
                    len: bytes.len(),
                    source,
                },
            })?;
            match as_pillow_8_bit(image) {
                DynamicImage::ImageRgb8(rgb) => Pixels::Rgb(rgb),
                other if keep_alpha && other.color().has_alpha() => Pixels::Rgba(other.to_rgba8()),
                other => Pixels::Rgb(other.to_rgb8()),
            }
        }
    };
    let (width, height) = pixels.size();
    if width == 0 || height == 0 {
        return Err(PreprocessError::Empty {
            width: width as u32,
            height: height as u32,
        });
    }
    Ok(pixels)
}

/// A 16-bit image as Pillow reads it into 8 bits: PNG's 16-bit RGB,
/// RGBA and grey + alpha keep each sample's high byte (Pillow's `;16B` raw
/// modes; the `image` crate would round instead), and 16-bit grey opens as
/// `I;16`, whose conversion to RGB clips at 255. Other images as they are.
fn as_pillow_8_bit(image: DynamicImage) -> DynamicImage {
    fn high_bytes(samples: &[u16]) -> Vec<u8> {
        samples.iter().map(|v| (v >> 8) as u8).collect()
    }
    let (width, height) = (image.width(), image.height());
    let converted = match &image {
        DynamicImage::ImageRgb16(i) => {
            image::RgbImage::from_raw(width, height, high_bytes(i.as_raw()))
                .map(DynamicImage::ImageRgb8)
        }
        DynamicImage::ImageRgba16(i) => {
            image::RgbaImage::from_raw(width, height, high_bytes(i.as_raw()))
                .map(DynamicImage::ImageRgba8)
        }
        DynamicImage::ImageLumaA16(i) => {
            image::GrayAlphaImage::from_raw(width, height, high_bytes(i.as_raw()))
                .map(DynamicImage::ImageLumaA8)
        }
        DynamicImage::ImageLuma16(i) => image::GrayImage::from_raw(
            width,
            height,
            i.as_raw().iter().map(|&v| v.min(255) as u8).collect(),
        )
        .map(DynamicImage::ImageLuma8),
        _ => None,
    };
    converted.unwrap_or(image)
}

/// The most bytes a decoded image may take (the `image` crate's default
/// limit, applied to JPEG too).
const MAX_DECODED_BYTES: usize = 512 << 20;

fn too_large(width: usize, height: usize) -> PreprocessError {
    PreprocessError::TooLarge {
        width: width as u64,
        height: height as u64,
        limit_mib: MAX_DECODED_BYTES >> 20,
    }
}

/// The size the image's header states, read without decoding it.
fn image_size(bytes: &[u8]) -> Option<(usize, usize)> {
    let (w, h) = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()?;
    Some((w as usize, h as usize))
}

/// JPEG through libjpeg-turbo, as Pillow decodes it.
mod jpeg {
    use image::RgbImage;
    use mozjpeg::{ColorSpace, DctMethod, Decompress};

    pub(super) enum Decoded {
        Rgb(RgbImage),
        /// Width and height: over [`super::MAX_DECODED_BYTES`].
        TooLarge(usize, usize),
        /// Not a JPEG.
        NotForLibjpeg,
        /// libjpeg's reason.
        Failed(String),
    }

    pub(super) fn decode(bytes: &[u8]) -> Decoded {
        // SOI then the start of a marker.
        if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return Decoded::NotForLibjpeg;
        }
        // libjpeg reports fatal errors by unwinding out of its callback
        // (the `mozjpeg` crate's design, without the panic hook), so every
        // call into it is inside `catch_unwind`.
        let decoded = std::panic::catch_unwind(|| -> Result<Decoded, String> {
            let mut d = Decompress::new_mem(bytes).map_err(|e| e.to_string())?;
            let cmyk = matches!(d.color_space(), ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK);
            let (width, height) = d.size();
            // CMYK comes out of libjpeg as 4 bytes a pixel, then RGB.
            let per_pixel = if cmyk { 4 } else { 3 };
            if width.saturating_mul(height).saturating_mul(per_pixel) > super::MAX_DECODED_BYTES {
                return Ok(Decoded::TooLarge(width, height));
            }
            // Pillow's settings (and libjpeg's defaults), stated.
            d.dct_method(DctMethod::IntegerSlow);
            d.do_fancy_upsampling(true);
            // libjpeg cannot turn CMYK into RGB: it gives CMYK, as to Pillow.
            let out = if cmyk {
                ColorSpace::JCS_CMYK
            } else {
                ColorSpace::JCS_RGB
            };
            let mut started = d.to_colorspace(out).map_err(|e| e.to_string())?;
            let (w, h) = (started.width(), started.height());
            let mut pixels: Vec<u8> = started.read_scanlines().map_err(|e| e.to_string())?;
            started.finish().map_err(|e| e.to_string())?;
            if cmyk {
                pixels = cmyk_to_rgb(&pixels);
            }
            // libjpeg pads a cut-off file with grey and only warns; Pillow
            // refuses it ("image file is truncated"), and so do we.
            if !has_end_marker(bytes) {
                return Err(
                    "the data ends before the end-of-image marker: the file is truncated".into(),
                );
            }
            let (w, h) = (u32::try_from(w), u32::try_from(h));
            match (w, h) {
                (Ok(w), Ok(h)) => RgbImage::from_raw(w, h, pixels)
                    .map(Decoded::Rgb)
                    .ok_or_else(|| "libjpeg returned fewer pixels than the image has".into()),
                _ => Err("the image is too large".into()),
            }
        });
        match decoded {
            Ok(Ok(decoded)) => decoded,
            Ok(Err(reason)) => Decoded::Failed(reason),
            Err(unwound) => Decoded::Failed(
                unwound
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "libjpeg failed".into()),
            ),
        }
    }

    /// Whether the end-of-image marker (`FF D9`) follows the first scan.
    /// The marker segments before the scan are walked by their lengths, as
    /// Pillow does, because their contents (an EXIF thumbnail, say) may
    /// hold markers of their own; inside scan data `FF` is always escaped,
    /// so `FF D9` there is the real end.
    pub(super) fn has_end_marker(bytes: &[u8]) -> bool {
        let mut i = 2; // after SOI
        loop {
            // Markers may be preceded by any number of `FF` fill bytes.
            while bytes.get(i) == Some(&0xFF) && bytes.get(i + 1) == Some(&0xFF) {
                i += 1;
            }
            let (Some(0xFF), Some(&marker)) = (bytes.get(i), bytes.get(i + 1)) else {
                return false;
            };
            i += 2;
            match marker {
                0xDA => break,                  // start of scan
                0xD9 => return false,           // ends before any scan
                0x01 | 0xD0..=0xD8 => continue, // no length follows
                _ => match bytes.get(i..i + 2) {
                    Some(&[hi, lo]) => i += usize::from(u16::from_be_bytes([hi, lo])),
                    _ => return false,
                },
            }
        }
        bytes
            .get(i..)
            .is_some_and(|scan| scan.windows(2).any(|w| w == [0xFF, 0xD9]))
    }

    /// Pillow's reading of CMYK JPEGs: the samples inverted (`CMYK;I`,
    /// "assume adobe conventions"), then its `cmyk2rgb`:
    /// `nk - nk * c / 255` per channel with `nk = 255 - k`, in its rounding.
    fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
        let muldiv255 = |a: u32, b: u32| {
            let t = a * b + 128;
            ((t >> 8) + t) >> 8
        };
        let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
        for px in cmyk.chunks_exact(4) {
            // k is stored inverted: 255 - (255 - k).
            let nk = u32::from(px[3]);
            for &c in &px[..3] {
                let c = 255 - u32::from(c);
                rgb.push(nk.saturating_sub(muldiv255(c, nk)) as u8);
            }
        }
        rgb
    }
}

/// A preprocessing recipe, torchvision's `Resize(size)`, `CenterCrop(size)`,
/// `ToTensor()`, `Normalize(mean, std)` on Pillow's pixels: the seed's
/// ImageNet one for the resnets, and EfficientNet-Lite's (its input size,
/// mean = std = 0.5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// The side of the square the model takes.
    pub size: usize,
    /// Channel means.
    pub mean: [f32; 3],
    /// Channel standard deviations.
    pub std: [f32; 3],
    /// When an image's alpha channel is dropped: before resizing (the
    /// seed's `convert("RGB")` first) or after (Pillow's premultiplied
    /// resize of the RGBA image).
    pub alpha: Alpha,
}

/// Where a transparent image's alpha is dropped; it changes the pixels
/// wherever alpha is neither 0 nor 255.
///
/// - [`Alpha::Drop`] (the default, the seed's chain):
///   `Image.open(f).convert("RGB")`, then `Resize`: alpha is discarded
///   first and the colour channels are resized as they are.
/// - [`Alpha::Premultiplied`]: `Resize` and `CenterCrop` on the RGBA image
///   as opened, then `.convert("RGB")` (a chain that forgets the convert
///   until after resizing, or drops alpha from the tensor). Pillow resizes
///   RGBA and LA images in premultiplied alpha: colours are multiplied by
///   alpha (`RGBa`, rounded as Pillow's `MULDIV255`), resized, then divided
///   by the resized alpha (truncating, clamped), so a fully transparent
///   pixel's colour does not bleed into its neighbours. Reproduced bit for
///   bit for RGBA and grey + alpha PNGs. Not reproduced: palette PNGs with
///   transparency, which Pillow resizes with `NEAREST` in this chain (here
///   they are resized like RGBA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Alpha {
    /// Alpha dropped before resizing.
    #[default]
    Drop,
    /// Resized in premultiplied alpha, dropped after.
    Premultiplied,
}

/// Decoded pixels: RGB, or RGBA when the image has alpha and the transform
/// keeps it through the resize.
enum Pixels {
    Rgb(RgbImage),
    Rgba(image::RgbaImage),
}

impl Pixels {
    fn size(&self) -> (usize, usize) {
        match self {
            Pixels::Rgb(i) => (i.width() as usize, i.height() as usize),
            Pixels::Rgba(i) => (i.width() as usize, i.height() as usize),
        }
    }

    fn into_rgb(self) -> RgbImage {
        match self {
            Pixels::Rgb(i) => i,
            Pixels::Rgba(i) => DynamicImage::ImageRgba8(i).to_rgb8(),
        }
    }
}

/// Pillow's `MULDIV255(a, b)`: `a * b / 255`, rounded.
fn muldiv255(a: u8, b: u8) -> u8 {
    let t = u32::from(a) * u32::from(b) + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// RGBA -> RGBa (Pillow's `rgbA2rgba`).
fn premultiply(rgba: &[u8]) -> Vec<u8> {
    let mut out = rgba.to_vec();
    for px in out.chunks_exact_mut(4) {
        let a = px[3];
        for c in &mut px[..3] {
            *c = muldiv255(*c, a);
        }
    }
    out
}

/// RGBa -> RGBA (Pillow's `rgba2rgbA`: `255 * c / a`, truncated, clamped;
/// alpha 0 and 255 leave the colour as it is), then RGBA -> RGB.
fn unpremultiply_to_rgb(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks_exact(4)
        .flat_map(|px| {
            let a = u32::from(px[3]);
            let channel = |c: u8| {
                if a == 0 || a == 255 {
                    c
                } else {
                    (255 * u32::from(c) / a).min(255) as u8
                }
            };
            [channel(px[0]), channel(px[1]), channel(px[2])]
        })
        .collect()
}

impl Transform {
    /// The seed's: 224, ImageNet mean and std.
    pub const IMAGENET: Transform = Transform {
        size: SIZE,
        mean: MEAN,
        std: STD,
        alpha: Alpha::Drop,
    };

    /// EfficientNet-Lite's: input `size` (Lite0 224, Lite1 240), inputs in
    /// [-1, 1] (mean = std = 0.5).
    pub const fn lite(size: usize) -> Transform {
        Transform {
            size,
            mean: [0.5; 3],
            std: [0.5; 3],
            alpha: Alpha::Drop,
        }
    }

    /// The size `Resize(size)` gives an image of `width x height`: shorter
    /// side `size`, longer side `floor(size * long / short)`.
    ///
    /// ```
    /// use pipeline_examples::vision::transform::Transform;
    /// assert_eq!(Transform::IMAGENET.resized_size(320, 240), (298, 224));
    /// assert_eq!(Transform::lite(240).resized_size(100, 300), (240, 720));
    /// ```
    pub fn resized_size(&self, width: usize, height: usize) -> (usize, usize) {
        let (short, long) = if width <= height {
            (width, height)
        } else {
            (height, width)
        };
        // Python: int(size * long / short), true division of exact integers.
        let new_long = ((self.size * long) as f64 / short as f64) as usize;
        if width <= height {
            (self.size, new_long)
        } else {
            (new_long, self.size)
        }
    }

    /// Where `CenterCrop(size)` starts on an axis of `len`: Python's
    /// `int(round((len - size) / 2.0))`, which rounds half to even.
    fn crop_start(&self, len: usize) -> usize {
        let twice = len - self.size; // the crop fits: the shorter side is `size`
        let (half, odd) = (twice / 2, twice % 2 == 1);
        // x.5 rounds to the even neighbour.
        if odd && half % 2 == 1 {
            half + 1
        } else {
            half
        }
    }

    /// The same recipe with alpha handled as `alpha` says.
    ///
    /// ```
    /// use pipeline_examples::vision::transform::{Alpha, Transform};
    /// let t = Transform::IMAGENET.with_alpha(Alpha::Premultiplied);
    /// assert_eq!(t.alpha, Alpha::Premultiplied);
    /// ```
    pub const fn with_alpha(self, alpha: Alpha) -> Transform {
        Transform { alpha, ..self }
    }

    /// Decode, drop alpha, resize, center-crop, normalize: the whole chain,
    /// giving `3 * size * size` floats in channel-major (CHW) order.
    pub fn normalized_chw(&self, bytes: &[u8]) -> Result<Vec<f32>, PreprocessError> {
        let decoded = match self.alpha {
            Alpha::Drop => Pixels::Rgb(decode_rgb(bytes)?),
            Alpha::Premultiplied => decode_keeping_alpha(bytes)?,
        };
        let (w, h) = decoded.size();
        let (new_w, new_h) = self.resized_size(w, h);
        let size = self.size;
        let crop = Window {
            left: self.crop_start(new_w),
            top: self.crop_start(new_h),
            width: size,
            height: size,
        };
        let cropped = match (self.alpha, decoded) {
            (Alpha::Drop, decoded) => {
                let rgb = decoded.into_rgb();
                resample::<3>(rgb.as_raw(), (w, h), (new_w, new_h), crop)
            }
            (Alpha::Premultiplied, Pixels::Rgb(rgb)) => {
                resample::<3>(rgb.as_raw(), (w, h), (new_w, new_h), crop)
            }
            (Alpha::Premultiplied, Pixels::Rgba(rgba)) => {
                let premultiplied = premultiply(rgba.as_raw());
                let resized = resample::<4>(&premultiplied, (w, h), (new_w, new_h), crop);
                unpremultiply_to_rgb(&resized)
            }
        };
        let mut out = vec![0f32; 3 * size * size];
        for c in 0..3 {
            let plane = &mut out[c * size * size..(c + 1) * size * size];
            for (i, v) in plane.iter_mut().enumerate() {
                // ToTensor then Normalize, in f32 as torch computes them.
                let byte = f32::from(cropped[i * 3 + c]) / 255.0;
                *v = (byte - self.mean[c]) / self.std[c];
            }
        }
        Ok(out)
    }
}

/// The size torchvision's `Resize(224)` gives an image of `width x height`:
/// shorter side 224, longer side `floor(224 * long / short)`.
///
/// ```
/// use pipeline_examples::vision::transform::resized_size;
/// assert_eq!(resized_size(320, 240), (298, 224));
/// assert_eq!(resized_size(100, 300), (224, 672));
/// ```
pub fn resized_size(width: usize, height: usize) -> (usize, usize) {
    Transform::IMAGENET.resized_size(width, height)
}

/// Where `CenterCrop(224)` starts on an axis of `len`.
#[cfg(test)]
fn crop_start(len: usize) -> usize {
    Transform::IMAGENET.crop_start(len)
}

/// The seed's chain ([`Transform::IMAGENET`]): `3 * 224 * 224` floats in
/// channel-major (CHW) order.
///
/// ```
/// use pipeline_examples::vision::{sample_images, transform::normalized_chw};
/// let (_, png) = &sample_images()[0];
/// let chw = normalized_chw(png)?;
/// assert_eq!(chw.len(), 3 * 224 * 224);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn normalized_chw(bytes: &[u8]) -> Result<Vec<f32>, PreprocessError> {
    Transform::IMAGENET.normalized_chw(bytes)
}

/// Pillow's fixed-point precision for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One axis of a resampling: for each output position asked for, the first
/// input index, how many inputs it reads, and their fixed-point weights.
struct Taps {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear
/// (triangle) filter, support 1, for output positions `first..first + count`
/// of a resize from `in_size` to `out_size`. Each position's taps depend on
/// that position alone, so a window gets exactly the full resize's values.
fn taps(in_size: usize, out_size: usize, first: usize, count: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(count);
    let mut weights = vec![0i32; count * ksize];
    let mut k = vec![0f64; ksize];
    for (row, xx) in (first..first + count).enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero, as `as` does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let d = ((x + xmin) as f64 - center + 0.5) * ss;
            let w = (1.0 - d.abs()).max(0.0);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(xmax) {
            let w = if ww != 0.0 { kx / ww } else { *kx };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            weights[row * ksize + x] = if w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Taps {
        bounds,
        ksize,
        weights,
    }
}

impl Taps {
    /// The weights of output position `i` (counted from `first`).
    fn of(&self, i: usize) -> &[i32] {
        &self.weights[i * self.ksize..i * self.ksize + self.bounds[i].1]
    }
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The part of a resized image to compute, in resized coordinates.
#[derive(Debug, Clone, Copy)]
struct Window {
    left: usize,
    top: usize,
    width: usize,
    height: usize,
}

/// Pillow's `Image.resize((new_w, new_h), BILINEAR)` on packed pixels of
/// `C` channels (RGB, or premultiplied RGBa), then a
/// crop to `window`: a horizontal pass, then a vertical one, each skipped
/// when its size is unchanged. Only the window's pixels (and the input rows
/// they read) are computed, so a tiny image with an extreme aspect ratio
/// (1 x 60,000 resizes to 224 x 13,440,000) costs no more than any other.
fn resample<const C: usize>(
    px: &[u8],
    (w, h): (usize, usize),
    (new_w, new_h): (usize, usize),
    window: Window,
) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let out_w = window.width;
    // The vertical pass's taps say which input rows the horizontal pass
    // must produce.
    let vertical = (new_h != h).then(|| taps(h, new_h, window.top, window.height));
    let rows = match &vertical {
        Some(t) => {
            let first = t.bounds.iter().map(|&(min, _)| min).min().unwrap_or(0);
            let end = t.bounds.iter().map(|&(min, n)| min + n).max().unwrap_or(0);
            first..end
        }
        None => window.top..window.top + window.height,
    };
    // Horizontal pass over those rows, for the window's columns only.
    let mut horizontal = vec![0u8; out_w * rows.len() * C];
    let columns = (new_w != w).then(|| taps(w, new_w, window.left, out_w));
    for (r, y) in rows.clone().enumerate() {
        let row = &px[y * w * C..(y + 1) * w * C];
        let dst = &mut horizontal[r * out_w * C..(r + 1) * out_w * C];
        match &columns {
            None => dst.copy_from_slice(&row[window.left * C..(window.left + out_w) * C]),
            Some(t) => {
                for (xx, px_out) in dst.chunks_exact_mut(C).enumerate() {
                    let xmin = t.bounds[xx].0;
                    let mut acc = [half; C];
                    for (i, &kw) in t.of(xx).iter().enumerate() {
                        let p = &row[(xmin + i) * C..(xmin + i) * C + C];
                        for c in 0..C {
                            acc[c] += i32::from(p[c]) * kw;
                        }
                    }
                    for c in 0..C {
                        px_out[c] = clip8(acc[c]);
                    }
                }
            }
        }
    }
    let Some(t) = vertical else {
        return horizontal;
    };
    let mut out = vec![0u8; out_w * window.height * C];
    for (yy, dst) in out.chunks_exact_mut(out_w * C).enumerate() {
        let ymin = t.bounds[yy].0 - rows.start;
        for (xx, px_out) in dst.chunks_exact_mut(C).enumerate() {
            let mut acc = [half; C];
            for (i, &kw) in t.of(yy).iter().enumerate() {
                let p = &horizontal[((ymin + i) * out_w + xx) * C..];
                for c in 0..C {
                    acc[c] += i32::from(p[c]) * kw;
                }
            }
            for c in 0..C {
                px_out[c] = clip8(acc[c]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_rounds_half_to_even() {
        // Python: round(0.5) == 0, round(1.5) == 2, round(2.5) == 2.
        assert_eq!(crop_start(225), 0);
        assert_eq!(crop_start(227), 2);
        assert_eq!(crop_start(229), 2);
        assert_eq!(crop_start(228), 2);
        assert_eq!(crop_start(224), 0);
    }

    fn full(width: usize, height: usize) -> Window {
        Window {
            left: 0,
            top: 0,
            width,
            height,
        }
    }

    #[test]
    fn same_size_resample_is_identity() {
        let px: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
        assert_eq!(resample::<3>(&px, (4, 3), (4, 3), full(4, 3)), px);
    }

    #[test]
    fn flat_image_stays_flat_when_resized() {
        let px = vec![100u8; 50 * 30 * 3];
        let out = resample::<3>(&px, (50, 30), (37, 224), full(37, 224));
        assert_eq!(out.len(), 37 * 224 * 3);
        assert!(out.iter().all(|&v| v == 100));
    }

    #[test]
    fn a_window_equals_the_same_part_of_the_full_resize() {
        // A noisy image, shrunk on one axis and grown on the other.
        let (w, h, new_w, new_h) = (61, 23, 40, 57);
        let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 7919 % 251) as u8).collect();
        let whole = resample::<3>(&px, (w, h), (new_w, new_h), full(new_w, new_h));
        let window = Window {
            left: 7,
            top: 11,
            width: 20,
            height: 30,
        };
        let part = resample::<3>(&px, (w, h), (new_w, new_h), window);
        for y in 0..window.height {
            let start = ((window.top + y) * new_w + window.left) * 3;
            assert_eq!(
                part[y * window.width * 3..(y + 1) * window.width * 3],
                whole[start..start + window.width * 3],
                "row {y}"
            );
        }
    }

    #[test]
    fn the_end_marker_is_looked_for_after_the_first_scan_only() {
        // SOI, an APP1 segment holding a whole thumbnail (with its own
        // SOS and EOI), then the real scan.
        let app1 = [0xFF, 0xE1, 0x00, 0x08, 0xFF, 0xDA, 0x01, 0xFF, 0xD9, 0x00];
        let mut jpeg = vec![0xFF, 0xD8];
        jpeg.extend_from_slice(&app1);
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34]);
        assert!(!jpeg::has_end_marker(&jpeg), "cut off after the scan data");
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        assert!(jpeg::has_end_marker(&jpeg));
        jpeg.extend_from_slice(b"trailing bytes after EOI are fine");
        assert!(jpeg::has_end_marker(&jpeg));
        assert!(!jpeg::has_end_marker(&[0xFF, 0xD8, 0xFF, 0xE1, 0x40]));
    }

    fn sample(ext: &str) -> Vec<u8> {
        crate::vision::sample_images()
            .into_iter()
            .find(|(name, _)| name.ends_with(ext))
            .expect("a sample")
            .1
    }

    /// PNG's chunk checksum (CRC-32, ISO-HDLC).
    fn crc32(bytes: &[u8]) -> u32 {
        !bytes.iter().fold(!0u32, |crc, &b| {
            (0..8).fold(crc ^ u32::from(b), |c, _| {
                if c & 1 == 1 {
                    (c >> 1) ^ 0xEDB8_8320
                } else {
                    c >> 1
                }
            })
        })
    }

    #[test]
    fn huge_images_are_refused_from_their_headers() {
        // A PNG whose header claims 30000 x 30000 (2.5 GB of RGB).
        let mut png = sample(".png");
        // Signature (8), IHDR length (4), "IHDR" (4), width, height.
        png[16..20].copy_from_slice(&30_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&30_000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        // A JPEG whose frame header says the same.
        let mut jpeg = sample(".jpg");
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("baseline frame header");
        // Marker (2), length (2), precision (1), height (2), width (2).
        jpeg[sof + 5..sof + 7].copy_from_slice(&30_000u16.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&30_000u16.to_be_bytes());
        for bytes in [png, jpeg] {
            match normalized_chw(&bytes) {
                Err(e @ PreprocessError::TooLarge { .. }) => assert_eq!(
                    e.to_string(),
                    "the image is 30000x30000: decoded, it would take more than 512 MiB"
                ),
                other => panic!("expected TooLarge, got {:?}", other.map(|v| v.len())),
            }
        }
    }

    #[test]
    fn an_extreme_aspect_ratio_costs_only_its_crop() {
        // 1 x 60,000 resizes to 224 x 13,440,000 (9 GB of RGB); only the
        // centre crop is computed.
        let (w, h) = (1, 60_000);
        let px: Vec<u8> = (0..w * h * 3).map(|i| (i % 256) as u8).collect();
        let (new_w, new_h) = resized_size(w, h);
        assert_eq!((new_w, new_h), (224, 13_440_000));
        let crop = Window {
            left: crop_start(new_w),
            top: crop_start(new_h),
            width: SIZE,
            height: SIZE,
        };
        assert_eq!(
            resample::<3>(&px, (w, h), (new_w, new_h), crop).len(),
            SIZE * SIZE * 3
        );
    }
}
