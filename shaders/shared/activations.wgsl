// shared/activations.wgsl — pointwise activations shared by the kernels that fuse them into their store.
// Prepended to a kernel's source by the kernel registry (src/gpu/kernels.rs); it has no bindings of its own.
// Codes (the `ACT` override of the kernels): 0 identity, 1 relu, 2 silu, 3 gelu (exact erf form), 4 tanh.
// activate_derivative gives d act / dx (relu: 0 at x = 0, as PyTorch's backward).
// erf and tanh are written out because WGSL has no erf and drivers' tanh may overflow to NaN for large |x|.

const ACT_IDENTITY: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_SILU: u32 = 2u;
const ACT_GELU: u32 = 3u;
const ACT_TANH: u32 = 4u;

// erfc(|x|) by the Chebyshev fit of Numerical Recipes (erfcc), fractional error < 1.2e-7 (also far in the tail,
// where 1 − erf(x) would cancel).
fn erfc_abs_f32(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(poly);
}

// erf(x) to about 1.2e-7 absolute, from erfc_abs_f32.
fn erf_f32(x: f32) -> f32 {
    let erfc_z = erfc_abs_f32(x);
    return select(erfc_z - 1.0, 1.0 - erfc_z, x >= 0.0);
}

// tanh without overflow: odd Taylor series near 0 (where 1 - e^{-2|x|} would cancel), e^{-2|x|} form elsewhere.
fn tanh_f32(x: f32) -> f32 {
    let z = abs(x);
    if (z < 0.125) {
        let z2 = z * z;
        return x * (1.0 + z2 * (-1.0 / 3.0 + z2 * (2.0 / 15.0 + z2 * (-17.0 / 315.0 + z2 * (62.0 / 2835.0)))));
    }
    let e = exp(-2.0 * z);
    return sign(x) * (1.0 - e) / (1.0 + e);
}

fn activate(code: u32, x: f32) -> f32 {
    switch code {
        case 1u: { return max(x, 0.0); }
        case 2u: { return x / (1.0 + exp(-x)); }
        case 3u: { return 0.5 * x * (1.0 + erf_f32(x * 0.70710678118654752)); }
        case 4u: { return tanh_f32(x); }
        default: { return x; }
    }
}

fn activate_derivative(code: u32, x: f32) -> f32 {
    switch code {
        case 1u: { return select(0.0, 1.0, x > 0.0); }
        case 2u: {
            let s = 1.0 / (1.0 + exp(-x));
            return s * (1.0 + x * (1.0 - s));
        }
        case 3u: { return 0.5 * (1.0 + erf_f32(x * 0.70710678118654752)) + x * 0.39894228040143268 * exp(-0.5 * x * x); }
        case 4u: {
            let t = tanh_f32(x);
            return 1.0 - t * t;
        }
        default: { return 1.0; }
    }
}
