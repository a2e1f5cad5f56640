"""The export gate: an exported model that does not do what the fine-tune learned fails.

After a run's merge and export, llama.cpp (``backends/export/gguf_check.py``) measures
two things, and each has a threshold; a run that misses one ends as failed, registers
nothing, and keeps its adapter and checkpoint, so the person loses no training:

- **Is the export the trained model?** llama.cpp's next-token logits of the unquantized
  F16 export against PyTorch's on validation tokens. F16 rounding moves logits by well
  under 1 % of their range and flips the top token only at near-ties, so the export must
  agree on the top token at least ``min_top1_agreement`` (90 %) of the time and differ by
  at most ``max_relative_logit_diff`` (5 %) of the largest logit. A wrong tensor name,
  a missed permutation or a norm off by one misses both by far (tens of percent).
- **Did quantization keep what it learned?** The quantized model's validation loss
  through llama.cpp against PyTorch's, on the same target tokens. q8_0 adds about 0.01;
  q4_k_m on small models up to about 0.1-0.2. A gap over ``max_loss_gap`` +
  ``max_relative_loss_gap`` x the PyTorch loss means the quantized model has lost much
  of what was learned; the message suggests a gentler quantization.

A result kept as a live adapter (``quant`` "adapter") passes the same two checks with
llama.cpp applying the adapter to the base instead of a merged file. That base is the
person's quantized GGUF, which by itself departs from PyTorch (trained on its dequantized
weights): on the Q4_1 starter model the base alone differs by 4.4 % of the largest
logit, and with a small adapter on, 9 of 100 next tokens flip at near-ties (91 % strict
top-1 agreement) while the validation loss matches to 0.006. So the check measures the
base alone too: the adapter may add the logit limit on top of the base's own departure,
and a llama.cpp pick that PyTorch scores within that departure of its own top token
counts as agreeing. The validation-loss check (unchanged) catches an adapter that does
not carry what was learned.

The numbers are in the run's summary either way, and in the error when it fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FidelityThresholds:
    min_top1_agreement: float = 0.90
    max_relative_logit_diff: float = 0.05
    max_loss_gap: float = 0.25
    max_relative_loss_gap: float = 0.10


def failures(check: dict[str, Any], torch_val_loss: float, quant: str,
             limits: FidelityThresholds = FidelityThresholds()) -> list[str]:
    """Why the export fails the gate, in words for the person; empty when it passes."""
    reasons = []
    ref_max = max(1e-6, float(check["logits_ref_max_abs"]))
    top1 = float(check["top1_agreement"])
    rel = float(check["logits_max_abs_diff"]) / ref_max
    min_top1, max_rel = limits.min_top1_agreement, limits.max_relative_logit_diff
    base_note = ""
    if check.get("base_top1_agreement") is not None:
        # A live adapter runs on the quantized base, which departs from PyTorch's
        # dequantized weights by itself: the adapter may add the limits on top of that.
        # Its top-1 counts a pick PyTorch scores within the base's noise as a tie.
        base_top1 = float(check["base_top1_agreement"])
        base_rel = float(check["base_logits_max_abs_diff"]) / ref_max
        top1 = float(check.get("top1_within_base_noise", top1))
        max_rel += base_rel
        base_note = (f"; the quantized base alone agrees {base_top1:.0%} of the time and "
                     f"differs by {base_rel:.1%}, and picks within that of PyTorch's top "
                     "count as ties")
    if top1 < min_top1 or rel > max_rel:
        reasons.append(
            f"the exported GGUF is not the trained model: llama.cpp agrees with PyTorch on "
            f"the next token {top1:.0%} of the time (at least {min_top1:.0%} needed) and "
            f"its logits differ by {rel:.1%} (at most {max_rel:.1%} allowed){base_note}")
    gap = float(check["gguf_val_loss"]) - torch_val_loss
    allowed = limits.max_loss_gap + limits.max_relative_loss_gap * torch_val_loss
    if gap > allowed and quant == "adapter":
        reasons.append(
            f"applied live on the base, the adapter lost what was learned: its validation "
            f"loss is {float(check['gguf_val_loss']):.3f} against the trained model's "
            f"{torch_val_loss:.3f} (+{gap:.3f}; at most +{allowed:.3f} allowed); merge it "
            "into the weights instead")
    elif gap > allowed:
        gentler = "q8_0" if quant == "q4_k_m" else "f16"
        reasons.append(
            f"the {quant} model lost what was learned: its validation loss is "
            f"{float(check['gguf_val_loss']):.3f} against the trained model's "
            f"{torch_val_loss:.3f} (+{gap:.3f}; at most +{allowed:.3f} allowed); export "
            f"with {gentler} instead")
    return reasons
