"""YOLOv8-seg masks straight into the original frame, in numpy: only kept boxes, only the pixels around each box.

The reference (ultralytics' `process_mask(upsample=True)`, then `PreprocessMeta.masks_from_model`) works on whole
canvases: every mask's logits (coefficients x prototypes) are upsampled bilinearly from the prototype grid to the
input canvas (160 -> 640), thresholded at 0 and cropped to the box (input pixels c with x1 <= c < x2), then the
padding is cut away and the binary mask resized bilinearly to the original size and thresholded at 0.5.
This module takes the same two steps with the same sampling points and weights (half-pixel centres, edge-clamped,
float32 weights), but only over the box: the prototype cells under the box are multiplied out, the input pixels
inside the box are sampled, and only the original pixels whose resize reaches those input pixels are written. The
arithmetic order differs (a matrix-vector product per mask instead of one matrix product), so a pixel whose logit
is within float rounding of 0 may flip: masks equal the reference except, rarely, on boundary pixels.
"""

from __future__ import annotations

import math

import numpy as np

from mlcore.preprocess import PreprocessMeta


class _Taps:
    """Bilinear taps along one axis, as torch's upsample_bilinear2d(align_corners=False) computes them in float32:
    for each output index, the two source indices and the weights of each."""

    def __init__(self, count: int, source_size: int, offset: float = 0.0, first: int = 0) -> None:
        scale = np.float32(source_size) / np.float32(count)
        centres = np.arange(first, first + count, dtype=np.float32) if first else np.arange(count, dtype=np.float32)
        source = np.maximum(scale * (centres + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
        low = source.astype(np.int64)  # truncation: source >= 0
        self.low = low + int(offset)
        self.high = np.where(low < source_size - 1, low + 1, low) + int(offset)
        self.high_weight = (source - low.astype(np.float32)).astype(np.float32)
        self.low_weight = (np.float32(1.0) - self.high_weight).astype(np.float32)


def masks_in_original_frame(protos: np.ndarray, coefficients: np.ndarray, boxes_input: np.ndarray,
                            input_size: tuple[int, int], meta: PreprocessMeta) -> np.ndarray:
    """(n, H, W) bool masks in the original frame.

    protos (nm, mh, mw) over the whole input canvas; coefficients (n, nm); boxes_input (n, 4) xyxy in the INPUT
    (letterboxed) frame, as NMS gives them; input_size (H, W) of the canvas.
    """
    height, width = meta.original_size
    masks = np.zeros((coefficients.shape[0], height, width), dtype=bool)
    if not coefficients.shape[0]:
        return masks
    protos = np.asarray(protos, dtype=np.float32)
    coefficients = np.asarray(coefficients, dtype=np.float32)
    channels, proto_h, proto_w = protos.shape
    input_h, input_w = input_size
    (resized_h, resized_w), (left, top) = meta.resized_size, meta.pad[:2]
    # Step 1 taps: input pixel -> prototype cells (the whole canvas, as the reference upsamples it).
    cell_cols, cell_rows = _Taps(input_w, proto_w), _Taps(input_h, proto_h)
    # Step 2 taps: original pixel -> input pixels inside the unpadded region (offset by the padding).
    input_cols, input_rows = _Taps(width, resized_w, offset=left), _Taps(height, resized_h, offset=top)
    unscaled = (resized_h, resized_w) == (height, width)
    for index, box in enumerate(np.asarray(boxes_input, dtype=np.float32)):
        x1, y1, x2, y2 = (float(value) for value in box)
        # input pixels inside the box (c >= x1 and c < x2) and inside the unpadded image
        col0, col1 = max(math.ceil(x1), left), min(math.ceil(x2), left + resized_w)
        row0, row1 = max(math.ceil(y1), top), min(math.ceil(y2), top + resized_h)
        if col0 >= col1 or row0 >= row1:
            continue
        inside = _binary_inside_box(protos, coefficients[index], cell_cols, cell_rows, (col0, col1), (row0, row1),
                                    channels)
        if unscaled:  # a resize to the same size has weights 1 and 0: the input pixels are the original ones
            masks[index, row0 - top:row1 - top, col0 - left:col1 - left] = inside > 0.5
            continue
        out_cols = _reaching(input_cols, col0, col1)
        out_rows = _reaching(input_rows, row0, row1)
        if out_cols.start >= out_cols.stop or out_rows.start >= out_rows.stop:
            continue
        # Zero border: taps that leave the box read 0, as the reference's cropped canvas does there.
        padded = np.zeros((row1 - row0 + 2, col1 - col0 + 2), dtype=np.float32)
        padded[1:-1, 1:-1] = inside
        lo_c, hi_c = _local(input_cols.low[out_cols], col0, col1), _local(input_cols.high[out_cols], col0, col1)
        lo_r, hi_r = _local(input_rows.low[out_rows], row0, row1), _local(input_rows.high[out_rows], row0, row1)
        across = padded[:, lo_c] * input_cols.low_weight[out_cols] + padded[:, hi_c] * input_cols.high_weight[out_cols]
        values = (across[lo_r] * input_rows.low_weight[out_rows][:, None]
                  + across[hi_r] * input_rows.high_weight[out_rows][:, None])
        masks[index, out_rows, out_cols] = values > 0.5
    return masks


def _binary_inside_box(protos: np.ndarray, coefficients: np.ndarray, cols: _Taps, rows: _Taps,
                       col_range: tuple[int, int], row_range: tuple[int, int], channels: int) -> np.ndarray:
    """Step 1 over the box: upsampled logits > 0 at input pixels [row0, row1) x [col0, col1), as float 0 / 1."""
    (col0, col1), (row0, row1) = col_range, row_range
    c_lo, c_hi = cols.low[col0:col1], cols.high[col0:col1]
    r_lo, r_hi = rows.low[row0:row1], rows.high[row0:row1]
    cell_c0, cell_c1 = int(c_lo[0]), int(c_hi[-1]) + 1
    cell_r0, cell_r1 = int(r_lo[0]), int(r_hi[-1]) + 1
    cells = protos[:, cell_r0:cell_r1, cell_c0:cell_c1].reshape(channels, -1)
    logits = (coefficients @ cells).reshape(cell_r1 - cell_r0, cell_c1 - cell_c0)
    across = (logits[:, c_lo - cell_c0] * cols.low_weight[col0:col1]
              + logits[:, c_hi - cell_c0] * cols.high_weight[col0:col1])
    values = (across[r_lo - cell_r0] * rows.low_weight[row0:row1][:, None]
              + across[r_hi - cell_r0] * rows.high_weight[row0:row1][:, None])
    return (values > 0).astype(np.float32)


def _reaching(taps: _Taps, start: int, stop: int) -> slice:
    """The output indices whose two taps include an input index in [start, stop) (taps are non-decreasing)."""
    first = int(np.searchsorted(taps.high, start, side="left"))
    last = int(np.searchsorted(taps.low, stop, side="left"))
    return slice(first, last)


def _local(indices: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Input indices -> positions in the zero-bordered box array (outside the box -> a border cell)."""
    return np.clip(indices - start + 1, 0, stop - start + 1)
