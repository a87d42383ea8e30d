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
/// ```
/// use pipeline_examples::vision::transform::decode_rgb;
/// assert!(decode_rgb(b"not an image").unwrap_err().to_string().contains("cannot decode"));
/// ```
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, PreprocessError> {
    let image = image::load_from_memory(bytes).map_err(|source| PreprocessError::Decode {
        len: bytes.len(),
        source,
    })?;
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    };
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(PreprocessError::Empty {
            width: rgb.width(),
            height: rgb.height(),
        });
    }
    Ok(rgb)
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
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    // Python: int(224 * long / short), true division of exact integers.
    let new_long = ((SIZE * long) as f64 / short as f64) as usize;
    if width <= height {
        (SIZE, new_long)
    } else {
        (new_long, SIZE)
    }
}

/// Where `CenterCrop(224)` starts on an axis of `len`: Python's
/// `int(round((len - 224) / 2.0))`, which rounds half to even.
fn crop_start(len: usize) -> usize {
    let twice = len - SIZE; // the crop fits: the shorter side is 224
    let (half, odd) = (twice / 2, twice % 2 == 1);
    // x.5 rounds to the even neighbour.
    if odd && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Decode, drop alpha, resize, center-crop, normalize: the whole chain,
/// giving `3 * 224 * 224` floats in channel-major (CHW) order.
///
/// ```
/// use pipeline_examples::vision::{sample_images, transform::normalized_chw};
/// let (_, png) = &sample_images()[0];
/// let chw = normalized_chw(png)?;
/// assert_eq!(chw.len(), 3 * 224 * 224);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn normalized_chw(bytes: &[u8]) -> Result<Vec<f32>, PreprocessError> {
    let rgb = decode_rgb(bytes)?;
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let (new_w, new_h) = resized_size(w, h);
    let resized = resample(rgb.as_raw(), w, h, new_w, new_h);
    let (left, top) = (crop_start(new_w), crop_start(new_h));
    let mut out = vec![0f32; 3 * SIZE * SIZE];
    for c in 0..3 {
        let plane = &mut out[c * SIZE * SIZE..(c + 1) * SIZE * SIZE];
        for y in 0..SIZE {
            let row = &resized[((top + y) * new_w + left) * 3..];
            for x in 0..SIZE {
                // ToTensor then Normalize, in f32 as torch computes them.
                let v = f32::from(row[x * 3 + c]) / 255.0;
                plane[y * SIZE + x] = (v - MEAN[c]) / STD[c];
            }
        }
    }
    Ok(out)
}

/// Pillow's fixed-point precision for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One axis of a resampling: for each output position, the first input
/// index, how many inputs it reads, and their fixed-point weights.
struct Taps {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear
/// (triangle) filter, support 1.
fn taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
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
            weights[xx * ksize + x] = if w < 0.0 {
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

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize((new_w, new_h), BILINEAR)` on packed RGB: a
/// horizontal pass, then a vertical one, each skipped when its size is
/// unchanged.
fn resample(rgb: &[u8], w: usize, h: usize, new_w: usize, new_h: usize) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let horizontal = if new_w == w {
        rgb.to_vec()
    } else {
        let t = taps(w, new_w);
        let mut out = vec![0u8; new_w * h * 3];
        for y in 0..h {
            let row = &rgb[y * w * 3..(y + 1) * w * 3];
            for (xx, &(xmin, n)) in t.bounds.iter().enumerate() {
                let k = &t.weights[xx * t.ksize..xx * t.ksize + n];
                let mut acc = [half; 3];
                for (i, &kw) in k.iter().enumerate() {
                    let px = &row[(xmin + i) * 3..(xmin + i) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += i32::from(px[c]) * kw;
                    }
                }
                for c in 0..3 {
                    out[(y * new_w + xx) * 3 + c] = clip8(acc[c]);
                }
            }
        }
        out
    };
    if new_h == h {
        return horizontal;
    }
    let t = taps(h, new_h);
    let mut out = vec![0u8; new_w * new_h * 3];
    for (yy, &(ymin, n)) in t.bounds.iter().enumerate() {
        let k = &t.weights[yy * t.ksize..yy * t.ksize + n];
        for xx in 0..new_w {
            let mut acc = [half; 3];
            for (i, &kw) in k.iter().enumerate() {
                let px = &horizontal[((ymin + i) * new_w + xx) * 3..];
                for c in 0..3 {
                    acc[c] += i32::from(px[c]) * kw;
                }
            }
            for c in 0..3 {
                out[(yy * new_w + xx) * 3 + c] = clip8(acc[c]);
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

    #[test]
    fn same_size_resample_is_identity() {
        let px: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
        assert_eq!(resample(&px, 4, 3, 4, 3), px);
    }

    #[test]
    fn flat_image_stays_flat_when_resized() {
        let px = vec![100u8; 50 * 30 * 3];
        let out = resample(&px, 50, 30, 37, 224);
        assert!(out.iter().all(|&v| v == 100));
    }
}
