"""The image path and CPU bfloat16 inference (issue 18), ratios measured in one run.

    .venv/bin/python bench/bench_image_path.py           # writes bench/results/image_path.json
    .venv/bin/python bench/bench_image_path.py --quick   # smoke run, writes nothing

1. Memory layout of the camera images entering the ResNet-18 (GroupNorm) encoder, with the same
   weights: ``permuted`` (the dataset's HWC images viewed as NCHW by a permute: channels-last
   strides under contiguous-format weights, what ``to_float_chw`` returned before issue 18),
   ``nchw`` (a contiguous NCHW copy, what it returns now) and ``channels_last`` (input and
   weights both channels-last). One 96x96 camera's encoder (84x84 centre crops, spatial
   softmax, stage widths 16: the image recipe's; and 64: the standard ResNet-18) at policy batch
   1 and 64 (x 2 observation steps), forward in eval mode; and a training step (forward +
   backward) at batch 64. Outputs are compared with the nchw variant's.
2. bfloat16 autocast of a whole ``predict_action`` (SamplerOptions.autocast_dtype=bf16) against
   float32 on fixed observations and noise: the largest action difference (in normalised units,
   of actions in [-1, 1]) and the latency ratio, for the image policy and the state UNet policy.

Timings are medians of interleaved repeats with one torch thread; other jobs on the machine slow
every variant alike, so only the ratios are reported as figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from robopolicy.data.normalizer import Normalizer
from robopolicy.models.obs_encoder import ObsEncoder
from robopolicy.policies import DiffusionPolicy

CAMERAS = {"scene_rgb": [96, 96, 3], "wrist_rgb": [96, 96, 3]}
ENCODER = {"crop_shape": [84, 84], "resnet_width": 16, "num_keypoints": 32}
RESULTS = Path(__file__).parent / "results" / "image_path.json"


def median_seconds(fns: dict, repeats: int) -> dict[str, float]:
    """Median wall time of each callable, the callables interleaved in every repeat."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def layout_inputs(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(N, H, W, C)`` float images in the three layouts."""
    permuted = images.permute(0, 3, 1, 2)
    return {
        "permuted": permuted,
        "nchw": permuted.contiguous(),
        "channels_last": permuted.contiguous(memory_format=torch.channels_last),
    }


def encoder_layouts(batch: int, repeats: int, train: bool, width: int = 16) -> dict:
    torch.manual_seed(0)
    meta = {"obs": {k: {"shape": s, "type": "rgb"} for k, s in CAMERAS.items()}, "action": {}}
    kwargs = {**ENCODER, "resnet_width": width}
    encoder = ObsEncoder(meta, **kwargs).image_encoders[0].train(train)
    encoder_cl = ObsEncoder(meta, **kwargs).image_encoders[0].train(train)
    encoder_cl.load_state_dict(encoder.state_dict())
    encoder_cl.to(memory_format=torch.channels_last)
    images = torch.rand(batch * 2, 96, 96, 3)  # policy batch x 2 observation steps
    inputs = layout_inputs(images)
    nets = {"permuted": encoder, "nchw": encoder, "channels_last": encoder_cl}

    def run(name):
        if not train:
            with torch.no_grad():
                return nets[name](inputs[name])
        torch.manual_seed(1)  # the same random crops for every layout
        out = nets[name](inputs[name])
        out.square().mean().backward()
        return out.detach()

    outputs = {name: run(name) for name in nets}
    diffs = {name: (outputs[name] - outputs["nchw"]).abs().max().item() for name in nets}
    seconds = median_seconds({name: lambda n=name: run(n) for name in nets}, repeats)
    base = seconds["nchw"]
    return {
        "batch": batch,
        "resnet_width": width,
        "mode": "train step" if train else "inference",
        "seconds_nchw": base,
        "ratio_to_nchw": {name: seconds[name] / base for name in nets},
        "max_abs_diff_to_nchw": diffs,
    }


def make_policy(image: bool) -> tuple[DiffusionPolicy, dict[str, torch.Tensor]]:
    obs_meta = {"eef_pos": {"shape": [23], "type": "low_dim"}}
    if image:
        obs_meta.update({k: {"shape": s, "type": "rgb"} for k, s in CAMERAS.items()})
    meta = {"obs": obs_meta, "action": {"shape": [7]}}
    normalizer = Normalizer.from_shape_meta(meta)
    normalizer.fit({"eef_pos": torch.randn(100, 23), "action": torch.rand(100, 7) * 2 - 1})
    torch.manual_seed(0)
    policy = DiffusionPolicy(
        meta,
        normalizer,
        backbone="mlp" if image else "unet1d",
        backbone_kwargs={"hidden_dims": [512] * 3} if image else {"down_dims": [64, 128, 256]},
        obs_encoder_kwargs=ENCODER if image else {},
        prediction_type="sample",
    ).eval()
    generator = torch.Generator().manual_seed(0)
    obs = {"eef_pos": torch.randn(1, 2, 23, generator=generator)}
    for key, shape in CAMERAS.items():
        if image:
            obs[key] = torch.randint(0, 256, (1, 2, *shape), dtype=torch.uint8, generator=generator)
    return policy, obs


def autocast_figures(image: bool, repeats: int) -> dict:
    policy, obs = make_policy(image)
    noise = torch.randn(1, 16, 7, generator=torch.Generator().manual_seed(1))

    def act(dtype):
        return policy.predict_action(obs, noise=noise, autocast_dtype=dtype)["action_pred"]

    fp32, bf16 = act(None), act("bf16")
    scale = policy.normalize_action(fp32) - policy.normalize_action(bf16)
    seconds = median_seconds({"fp32": lambda: act(None), "bf16": lambda: act("bf16")}, repeats)
    return {
        "policy": "2 cameras + state, ResNet-18/16, MLP denoiser" if image else "state, UNet",
        "sampler": "DDIM 10 steps, batch 1",
        "max_abs_action_diff_normalised": scale.abs().max().item(),
        "seconds_fp32": seconds["fp32"],
        "speed_ratio_fp32_over_bf16": seconds["fp32"] / seconds["bf16"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, small batch, no file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats = 2 if args.quick else 7
    big = 4 if args.quick else 64
    results = {
        "torch": torch.__version__,
        "threads": 1,
        "load_average_at_start": os.getloadavg()[0],
        "encoder_layout": [
            encoder_layouts(1, repeats, train=False),
            encoder_layouts(1, repeats, train=False, width=64),
            encoder_layouts(big, max(2, repeats // 2), train=False),
            encoder_layouts(big, max(2, repeats // 2), train=True),
        ],
        "bf16_autocast": [autocast_figures(True, repeats), autocast_figures(False, repeats)],
    }
    print(json.dumps(results, indent=1))
    if not args.quick:
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
