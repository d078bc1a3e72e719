"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

FlameOpt = Annotated[Optional[str], typer.Option("--flame", help="FLAME 2020 generic_model.pkl (else $AGORA_FLAME_PKL or assets.yaml).")]
FlameUvOpt = Annotated[Optional[str], typer.Option("--flame-uv", help="FLAME UV template head_template.obj (else $AGORA_FLAME_UV or assets.yaml).")]
FlameEyelidsOpt = Annotated[Optional[str], typer.Option("--flame-eyelids", help="SMIRK eyelid blendshapes: the folder with l_eyelid.npy and r_eyelid.npy (else $AGORA_FLAME_EYELIDS or assets.yaml; without them eyelid parameters do not move FLAME).")]
SmirkOpt = Annotated[Optional[str], typer.Option("--smirk", help="SMIRK checkpoint SMIRK_em1.pt (else $AGORA_SMIRK or assets.yaml).")]
ModnetOpt = Annotated[Optional[str], typer.Option("--modnet", help="MODNet ONNX export (else $AGORA_MODNET or assets.yaml).")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="cpu or cuda (default: cuda if available).")]
ThreadsOpt = Annotated[int, typer.Option("--threads", help="CPU threads (0 = default).")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="Runs AGORA's per-frame path (deformation branch + lifting): torch, onnxruntime (CPU; the model exported to ONNX at start-up, in memory) or auto (onnxruntime on a CPU when it imports and the model exports, else torch).")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="Number format of the convolutions of AGORA's per-frame path (deformation branch): float32 (the same output on every machine), bfloat16 (on a CPU with bf16 units ~1.8x faster at full size, render ~55 dB PSNR from float32's; about 13x slower where the CPU emulates it; see the README section bfloat16) or auto (bfloat16 only on a CPU with bf16 units, avx512_bf16/amx_bf16; else float32). ONNX Runtime runs float32 only: bfloat16 with --executor auto runs torch; an explicit --executor onnxruntime wins over auto (float32) and cannot take bfloat16.")]
BasisFormatOpt = Annotated[str, typer.Option("--basis-format", help="How AGORA-M keeps its basis in memory (CPU only): float32; int16 (16-bit fixed point, one step per component: the web bundle's format, half the memory); or int8 (8-bit, one step per component and run of 256 values: a quarter of the memory, the fastest per frame at full size; renders ~60-70 dB PSNR from float32's on the demo model). See the README section AGORA-M basis in fixed point.")]
