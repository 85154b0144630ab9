"""Distillation: the fine-tuned, prompted teachers teach a prompt-free ultralytics student.

    from mlcore.distill.setup import train_student        # what `mlcore train-student` runs

`labelling` / `label_cache` run the teachers once per image; `targets` mixes their labels with the ground truth;
`batches` letterboxes targets into student batches (`records`); `losses` is the student's loss, one component per
file; `trainer` runs the epochs on `mlcore.training`'s engine.
"""
