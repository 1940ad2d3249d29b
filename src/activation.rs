//! Pointwise activations of the score networks, with their f64 reference forms.

use std::fmt;
use std::str::FromStr;

/// An activation; `code()` is the `ACT` override constant of the kernels (shaders/shared/activations.wgsl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    Identity,
    Relu,
    Silu,
    /// GELU in the exact erf form, PyTorch's default: x · Φ(x).
    Gelu,
    Tanh,
}

impl Activation {
    pub const ALL: [Activation; 4] = [Activation::Relu, Activation::Silu, Activation::Gelu, Activation::Tanh];

    pub fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::Silu => 2,
            Activation::Gelu => 3,
            Activation::Tanh => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Silu => "silu",
            Activation::Gelu => "gelu",
            Activation::Tanh => "tanh",
        }
    }

    /// The activation in f64, the reference the kernels are tested against.
    pub fn apply_f64(self, x: f64) -> f64 {
        match self {
            Activation::Identity => x,
            Activation::Relu => x.max(0.0),
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            Activation::Tanh => x.tanh(),
        }
    }
}

impl Activation {
    /// d act / dx in f64 (relu: 0 at 0, as PyTorch's backward).
    pub fn derivative_f64(self, x: f64) -> f64 {
        match self {
            Activation::Identity => 1.0,
            Activation::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Silu => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 + x * (1.0 - s))
            }
            Activation::Gelu => {
                0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
                    + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
            }
            Activation::Tanh => 1.0 - x.tanh().powi(2),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "relu" => Ok(Activation::Relu),
            "silu" | "swish" => Ok(Activation::Silu),
            "gelu" => Ok(Activation::Gelu),
            "tanh" => Ok(Activation::Tanh),
            "identity" | "none" | "linear" => Ok(Activation::Identity),
            other => Err(format!("unknown activation {other:?} (expected relu, silu, gelu or tanh)")),
        }
    }
}
