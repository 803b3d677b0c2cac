"""Training curricula: a declarative config of stages (``config``), the sampling math (``sampling``)
and the step that turns quality-scored versions into the exact documents of each stage (``stages``)."""

from pipelines.curriculum.config import (
    ClusterBucket,
    ClusterUpsampling,
    Curriculum,
    Selection,
    SourceWeight,
    Stage,
    load_curriculum,
    validate,
)

__all__ = [
    "ClusterBucket", "ClusterUpsampling", "Curriculum", "Selection", "SourceWeight", "Stage",
    "load_curriculum", "validate",
]  # fmt: skip
