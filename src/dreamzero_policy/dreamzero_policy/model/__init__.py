"""DreamZero world action model (pure PyTorch; no ROS).

Modules (import them directly; this package does not import torch eagerly):
- ``configuration_dreamzero``: ``DreamZeroConfig``, ``get_preset(name)`` (tiny, small, dreamzero-14b, dreamzero-5b).
- ``modeling_dreamzero``: ``DreamZeroDiT`` (teacher-forced ``forward_train``, KV-cached ``forward_cached``).
- ``losses``: ``FlowMatchingLoss``, ``TrainBatch`` (joint video + action flow matching).
- ``inference``: ``WorldActionModel`` (reset / set_conditioning / prefill / append_observed / denoise_next).
- ``pipeline``: ``WorldActionPipeline`` (pixels + state + prompt -> normalised actions; the runtime contract).
- ``convert_official``: official ``action_head.model.*`` state dict -> ours; ``checkpoint``: strict loading, format.
- ``scheduling``: training/inference grids and the flow UniPC sampler.
"""
