"""Teacher fine-tuning: LoRA on Grounding DINO (boxes from class names) and SAM (masks from boxes), mode-aware.

    from mlcore.finetune.setup import train_teachers      # what `mlcore train-teacher` runs
    artifacts = train_teachers(train_json, val_json, output_dir)

`trainer` runs the epochs on `mlcore.training`'s engine; `losses` turns a sample into each teacher's targets;
`dino_cache` / `sam_cache` run the frozen stages once per image; `evaluation` and `forgetting` score each epoch.
Importing this package does not import transformers; its modules do.
"""
