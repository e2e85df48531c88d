"""Training on synthetic data, evaluation on held-out cases, and fine-tuning from reviews.

Public API (import from the submodules; torch is imported only there)::

    train.train_model(name, *, steps=None, seed=0, out=None, smoke=False, ...) -> TrainOutcome
    evaluate.evaluate(name, version=None, *, weights_dir=None, n_cases=40, ...) -> EvaluationReport
    finetune.finetune(db_url=None, *, base="plax-linear", epochs=10, ...) -> FinetuneOutcome
    experiment.run_experiment(weights_dir, workdir, ...) -> dict   # the fine-tuning loop, end to end

Building blocks: :mod:`.datasets` (seed ranges, cached synthetic training sets),
:mod:`.heatmaps` (Gaussian targets, differentiable window centroids), :mod:`.augment`
(intensity augmentation), :mod:`.loop` (loss, AdamW + cosine, resumable checkpoints),
:mod:`.metrics` (MAE, within-1-mm share, Spearman confidence-error correlation).
"""
