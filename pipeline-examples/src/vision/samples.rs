//! Sample images for the demo, examples and benchmarks, drawn here so the
//! repository ships no binary files: smooth gradients with a few discs, in
//! the sizes and formats the preprocessing must handle.

use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

/// Draws a test picture: a diagonal gradient with discs whose place and
/// colour depend on `seed`.
fn picture(width: u32, height: u32, seed: u32) -> RgbImage {
    let discs: Vec<(f32, f32, f32, [u8; 3])> = (0..4u32)
        .map(|i| {
            let h = seed.wrapping_mul(2_654_435_761).wrapping_add(i * 40_503);
            let cx = (h % width) as f32;
            let cy = ((h / 7) % height) as f32;
            let r = (width.min(height) / 6 + (h % 17)) as f32;
            let colour = [(h >> 3) as u8, (h >> 11) as u8, (h >> 19) as u8];
            (cx, cy, r, colour)
        })
        .collect();
    RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        for &(cx, cy, r, colour) in &discs {
            if (fx - cx).powi(2) + (fy - cy).powi(2) < r * r {
                return Rgb(colour);
            }
        }
        let g = ((x * 255) / width.max(1)) as u8;
        let b = ((y * 255) / height.max(1)) as u8;
        Rgb([g, b, g / 2 + b / 2 + (seed as u8)])
    })
}

fn encode(image: impl Into<image::DynamicImage>, format: ImageFormat) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .into()
        .write_to(&mut bytes, format)
        .expect("encoding to memory cannot fail");
    bytes.into_inner()
}

/// Four small images, named by what they exercise: a landscape PNG, a
/// portrait PNG with an alpha channel, a JPEG, and a PNG smaller than 224
/// (upscaled).
///
/// ```
/// let images = pipeline_examples::vision::sample_images();
/// assert_eq!(images.len(), 4);
/// assert!(images.iter().all(|(_, bytes)| bytes.len() < 200_000));
/// ```
pub fn sample_images() -> Vec<(&'static str, Vec<u8>)> {
    let rgba = {
        let rgb = picture(200, 300, 2);
        RgbaImage::from_fn(200, 300, |x, y| {
            let p = rgb.get_pixel(x, y).0;
            Rgba([p[0], p[1], p[2], (x + y) as u8])
        })
    };
    vec![
        (
            "landscape-320x240.png",
            encode(picture(320, 240, 1), ImageFormat::Png),
        ),
        ("portrait-rgba-200x300.png", encode(rgba, ImageFormat::Png)),
        (
            "photo-300x200.jpg",
            encode(picture(300, 200, 3), ImageFormat::Jpeg),
        ),
        (
            "small-100x80.png",
            encode(picture(100, 80, 4), ImageFormat::Png),
        ),
    ]
}
