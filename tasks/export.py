"""Export, quantization and the accuracy gate as a Prefect task: a thin wrapper over `mlcore.optimization`."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed, State

from mlcore.errors import MlcoreError
from mlcore.optimization import OptimizationResult, optimize_model
from mlcore.reporting import gate_summary
from tasks.policy import release_accelerator_memory, retry_transient, stage_cache_key

TIMEOUT_SECONDS = 4 * 3600


def _markdown(result: OptimizationResult) -> str:
    lines = ["## Export", "", "| file | format | precision | size MB |", "|---|---|---|---|"]
    lines += [f"| {e['name']} | {e['format']} | {e['precision']} | {e['size_mb']:.2f} |" for e in result.files]
    lines += ["", f"- accuracy gate: {gate_summary(result)}",
              f"- recommended: `{result.recommended}` ({result.recommended_reason})",
              f"- report: `{result.report_path}`"]
    return "\n".join(lines)


# Cached on the checkpoint's and the calibration / validation files' content and the settings. A failed accuracy
# gate with on_fail "fail" is a ModelError: reported, not retried.
@task(name="export-model", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient,
      cache_key_fn=stage_cache_key("model", "calibration_data", "val_data"), persist_result=True,
      timeout_seconds=TIMEOUT_SECONDS)
def export_model_task(
    model: str,
    output: str,
    formats: list[str] | None = None,
    quantize: str = "int8",
    calibration_data: str | None = None,
    val_data: str | None = None,
    imgsz: int | None = None,
    images: str | None = None,
) -> OptimizationResult | State:
    """ONNX (always), the quantized model behind the accuracy gate, and a TensorRT engine when asked. images: the
    image folder of the calibration and validation COCO files (default: where validate recorded them)."""
    try:
        result = optimize_model(model, output, formats=formats or ["onnx"], quantize=quantize,
                                calibration_data=calibration_data if quantize == "int8" else None,
                                calibration_images_dir=images, val_data=val_data, val_images=images, imgsz=imgsz)
    except MlcoreError as error:
        return Failed(message=str(error))
    finally:
        release_accelerator_memory()
    create_markdown_artifact(_markdown(result), key="model-export", description=f"Export of {model}")
    return result
