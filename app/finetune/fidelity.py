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
weights). On the Q4_1 starter model the base alone differs by 3.7-4.4 % of the largest
logit; with a short run's adapter 9 of 100 next tokens flipped at near-ties (91 % strict
top-1) while the validation loss matched to 0.006, and with Teach's adapter (rank 16,
40 steps) the largest difference over the 49k-token vocabulary reached 19.8 % while the
top token agreed everywhere and the validation loss matched to 0.002 (0.1187 against
0.1202). The largest difference is then set by far-off vocabulary entries under
quantization, not by the adapter, so a live adapter is judged on the rest: llama.cpp
scores the base alone too, a pick that PyTorch scores within the base's own departure of
its top token counts as agreeing (at least ``min_top1_agreement``), and the
validation-loss check (unchanged) catches an adapter that is missing, misnamed or
mis-scaled, since then llama.cpp's loss stays near the untrained model's.

The numbers are in the run's summary either way, and in the error when it fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.finetune.export_check import CheckMeasures


@dataclass(frozen=True)
class FidelityThresholds:
    min_top1_agreement: float = 0.90
    max_relative_logit_diff: float = 0.05
    max_loss_gap: float = 0.25
    max_relative_loss_gap: float = 0.10


def failures(check: CheckMeasures, torch_val_loss: float, quant: str,
             limits: FidelityThresholds = FidelityThresholds()) -> list[str]:
    """Why the export fails the gate, in words for the person; empty when it passes."""
    reasons = []
    ref_max = max(1e-6, check.logits_ref_max_abs)
    top1 = check.top1_agreement
    rel = check.logits_max_abs_diff / ref_max
    min_top1, max_rel = limits.min_top1_agreement, limits.max_relative_logit_diff
    base_note = ""
    if check.base_top1_agreement is not None:
        # A live adapter runs on the quantized base, which departs from PyTorch's
        # dequantized weights by itself: the adapter may add the limits on top of that.
        # Its top-1 counts a pick PyTorch scores within the base's noise as a tie, and
        # the largest difference over the whole vocabulary is no measure (see above).
        base_top1 = check.base_top1_agreement
        base_rel = (check.base_logits_max_abs_diff or 0.0) / ref_max
        if check.top1_within_base_noise is not None:
            top1 = check.top1_within_base_noise
        max_rel = math.inf
        base_note = (f" (not judged on a quantized base); the quantized base alone agrees "
                     f"{base_top1:.0%} of the time and differs by {base_rel:.1%}, and picks "
                     "within that of PyTorch's top count as ties")
    if top1 < min_top1 or rel > max_rel:
        reasons.append(
            f"the exported GGUF is not the trained model: llama.cpp agrees with PyTorch on "
            f"the next token {top1:.0%} of the time (at least {min_top1:.0%} needed) and "
            f"its logits differ by {rel:.1%}"
            + (f" (at most {max_rel:.1%} allowed)" if math.isfinite(max_rel) else "")
            + base_note)
    gap = check.gguf_val_loss - torch_val_loss
    allowed = limits.max_loss_gap + limits.max_relative_loss_gap * torch_val_loss
    if gap > allowed and quant == "adapter":
        reasons.append(
            f"applied live on the base, the adapter lost what was learned: its validation "
            f"loss is {check.gguf_val_loss:.3f} against the trained model's "
            f"{torch_val_loss:.3f} (+{gap:.3f}; at most +{allowed:.3f} allowed); merge it "
            "into the weights instead")
    elif gap > allowed:
        gentler = "q8_0" if quant == "q4_k_m" else "f16"
        reasons.append(
            f"the {quant} model lost what was learned: its validation loss is "
            f"{check.gguf_val_loss:.3f} against the trained model's "
            f"{torch_val_loss:.3f} (+{gap:.3f}; at most +{allowed:.3f} allowed); export "
            f"with {gentler} instead")
    return reasons
