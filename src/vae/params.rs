//! The parameter names and shapes of an AutoencoderKL, in diffusers' layout.
//! Loading checks a file against this list before building the network, so
//! a wrong file fails with the key and both shapes instead of deep in a conv.

use super::config::VaeConfig;

/// One named parameter and its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

struct Specs(Vec<ParamSpec>);

impl Specs {
    fn push(&mut self, name: String, shape: Vec<usize>) {
        self.0.push(ParamSpec { name, shape });
    }

    fn conv(&mut self, name: &str, c_in: usize, c_out: usize, kernel: usize) {
        self.push(format!("{name}.weight"), vec![c_out, c_in, kernel, kernel]);
        self.push(format!("{name}.bias"), vec![c_out]);
    }

    fn linear(&mut self, name: &str, c_in: usize, c_out: usize) {
        self.push(format!("{name}.weight"), vec![c_out, c_in]);
        self.push(format!("{name}.bias"), vec![c_out]);
    }

    fn norm(&mut self, name: &str, channels: usize) {
        self.push(format!("{name}.weight"), vec![channels]);
        self.push(format!("{name}.bias"), vec![channels]);
    }

    fn resnet(&mut self, name: &str, c_in: usize, c_out: usize) {
        self.norm(&format!("{name}.norm1"), c_in);
        self.conv(&format!("{name}.conv1"), c_in, c_out, 3);
        self.norm(&format!("{name}.norm2"), c_out);
        self.conv(&format!("{name}.conv2"), c_out, c_out, 3);
        if c_in != c_out {
            self.conv(&format!("{name}.conv_shortcut"), c_in, c_out, 1);
        }
    }

    fn mid_block(&mut self, name: &str, channels: usize, attention: bool) {
        self.resnet(&format!("{name}.resnets.0"), channels, channels);
        if attention {
            let attn = format!("{name}.attentions.0");
            self.norm(&format!("{attn}.group_norm"), channels);
            for proj in ["to_q", "to_k", "to_v", "to_out.0"] {
                self.linear(&format!("{attn}.{proj}"), channels, channels);
            }
        }
        self.resnet(&format!("{name}.resnets.1"), channels, channels);
    }
}

/// Every parameter of the VAE described by `config`, with its diffusers name.
pub fn param_specs(config: &VaeConfig) -> Vec<ParamSpec> {
    let widths = &config.block_out_channels;
    let levels = widths.len();
    let top = widths[levels - 1];
    let latent = config.latent_channels;
    let mut s = Specs(Vec::new());

    s.conv("encoder.conv_in", config.in_channels, widths[0], 3);
    let mut c_in = widths[0];
    for (i, &c_out) in widths.iter().enumerate() {
        for j in 0..config.layers_per_block {
            let c = if j == 0 { c_in } else { c_out };
            s.resnet(&format!("encoder.down_blocks.{i}.resnets.{j}"), c, c_out);
        }
        if i + 1 < levels {
            s.conv(
                &format!("encoder.down_blocks.{i}.downsamplers.0.conv"),
                c_out,
                c_out,
                3,
            );
        }
        c_in = c_out;
    }
    s.mid_block("encoder.mid_block", top, config.mid_block_add_attention);
    s.norm("encoder.conv_norm_out", top);
    s.conv("encoder.conv_out", top, 2 * latent, 3);

    s.conv("decoder.conv_in", latent, top, 3);
    s.mid_block("decoder.mid_block", top, config.mid_block_add_attention);
    let mut c_in = top;
    for (i, &c_out) in widths.iter().rev().enumerate() {
        for j in 0..=config.layers_per_block {
            let c = if j == 0 { c_in } else { c_out };
            s.resnet(&format!("decoder.up_blocks.{i}.resnets.{j}"), c, c_out);
        }
        if i + 1 < levels {
            s.conv(
                &format!("decoder.up_blocks.{i}.upsamplers.0.conv"),
                c_out,
                c_out,
                3,
            );
        }
        c_in = c_out;
    }
    s.norm("decoder.conv_norm_out", widths[0]);
    s.conv("decoder.conv_out", widths[0], config.out_channels, 3);

    if config.use_quant_conv {
        s.conv("quant_conv", 2 * latent, 2 * latent, 1);
    }
    if config.use_post_quant_conv {
        s.conv("post_quant_conv", latent, latent, 1);
    }
    s.0
}
