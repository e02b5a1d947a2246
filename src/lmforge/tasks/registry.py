"""The task registry: which fine-tuning tasks exist, the ``TaskBundle`` of each, and the head a checkpoint names.

Every command that needs a task's data and scoring (``lmforge finetune``, ``lmforge evaluate clue``, ``predict``)
asks here, by task name, instead of reaching into ``tasks/finetune.py``. Task families and their modules:

| family | tasks | module |
|---|---|---|
| sequence classification | ``CLUE_TASKS`` (tnews, iflytek, ...) and ``classification`` | ``tasks/clue.py`` |
| multiple choice | ``CHOICE_TASKS`` (c3, chid) | ``tasks/c3.py``, ``tasks/chid.py`` |
| extractive QA | ``QA_TASKS`` (cmrc2018, squad) | ``tasks/qa.py`` |
| NER | ``NER_TASKS`` (cluener) | ``tasks/ner.py`` |
| TyDi QA | ``TYDI_TASKS`` | ``tasks/tydi.py`` |
| SFT (a causal LM, no task head) | ``SFT_TASKS`` | ``tasks/sft.py`` |

The task modules are imported only when their task is built (``lmforge --help`` imports no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmforge.tasks.common import TaskBundle

__all__ = [
    "CHOICE_TASKS",
    "NER_TASKS",
    "QA_TASKS",
    "SFT_TASKS",
    "TYDI_TASKS",
    "build_head",
    "build_task_bundle",
    "task_names",
]

QA_TASKS = ("cmrc2018", "squad")
NER_TASKS = ("cluener",)
SFT_TASKS = ("sft",)  # a causal LM on conversations: tasks/sft.py
TYDI_TASKS = ("tydi",)  # TyDi QA primary tasks: tasks/tydi.py
CHOICE_TASKS = ("c3", "chid")  # multiple choice: tasks/c3.py, tasks/chid.py


def task_names() -> list[str]:
    """Every task ``lmforge finetune`` accepts, sorted."""
    from lmforge.tasks.clue import CLUE_TASKS

    return sorted([*CLUE_TASKS, *QA_TASKS, *NER_TASKS, *SFT_TASKS, *TYDI_TASKS, *CHOICE_TASKS])


def build_task_bundle(
    args: Any,
    /,
    *,
    arch: str,
    config: Any,
    backbone: Any,
    tokenizer: Any,
    splits: tuple[str, ...],
    labels: list[str] | None = None,
    majority_label: str | None = None,
) -> TaskBundle:
    """The ``TaskBundle`` of ``args.task`` (a ``FinetuneArgs``: task, data_dir and the task's settings) over
    ``backbone``; ``labels`` fixes a classification label set and ``majority_label`` the baseline's label
    (evaluating a trained head: both from the run). SFT has no bundle (``tasks/sft.py`` trains the LM itself)."""
    from lmforge.heads.classification import backbone_output_size, default_pooling
    from lmforge.models.registry import get_entry

    width = backbone_output_size(backbone)
    if args.data_dir is None:
        raise ValueError("pass --data_dir: the directory with the task's train/dev/test files")
    if args.task in QA_TASKS:
        from lmforge.tasks.qa import build_qa_task

        return build_qa_task(args, tokenizer=tokenizer, hidden_size=width, splits=splits)
    if args.task in NER_TASKS:
        from lmforge.tasks.ner import build_ner_task

        return build_ner_task(args, tokenizer=tokenizer, hidden_size=width, splits=splits)
    if args.task in TYDI_TASKS:
        from lmforge.tasks.tydi import build_tydi_task

        return build_tydi_task(args, tokenizer=tokenizer, hidden_size=width, splits=splits, backbone=backbone)
    from lmforge.tasks.clue import CLUE_TASKS, build_classification_task

    if args.task not in CLUE_TASKS and args.task not in CHOICE_TASKS:
        raise ValueError(f"unknown task {args.task!r}; choose from {task_names()}")
    pooling = args.pooling if args.pooling != "auto" else default_pooling(config, builders=get_entry(arch).builders)
    if args.task in CHOICE_TASKS:
        from lmforge.tasks.c3 import build_c3_task
        from lmforge.tasks.chid import build_chid_task

        build_choice_task = build_chid_task if args.task == "chid" else build_c3_task
        return build_choice_task(args.data_dir, tokenizer=tokenizer, hidden_size=width, pooling=pooling,
                                 dropout=args.classifier_dropout, max_seq_length=args.max_seq_length,
                                 splits=splits)  # fmt: skip
    return build_classification_task(
        args.task, args.data_dir, tokenizer=tokenizer, hidden_size=width, pooling=pooling,
        dropout=args.classifier_dropout, max_seq_length=args.max_seq_length, splits=splits, labels=labels,
        majority_label=majority_label,
    )  # fmt: skip


def build_head(head_config: dict[str, Any], hidden_size: int) -> Any:
    """The task head described by a fine-tuned checkpoint's ``config.json`` ``"head"`` entry."""
    from lmforge.heads.classification import SequenceClassificationHead
    from lmforge.heads.qa import SpanHead
    from lmforge.heads.token_classification import TokenClassificationHead

    kind = head_config["kind"]
    if kind == "sequence_classification":
        return SequenceClassificationHead(
            hidden_size, len(head_config["labels"]), pooling=head_config["pooling"], dropout=head_config["dropout"]
        )
    if kind == "token_classification":
        return TokenClassificationHead(hidden_size, len(head_config["labels"]), dropout=head_config["dropout"])
    if kind == "span":
        return SpanHead(hidden_size)
    if kind == "multiple_choice":
        from lmforge.heads.multiple_choice import MultipleChoiceHead

        return MultipleChoiceHead(hidden_size, pooling=head_config["pooling"], dropout=head_config["dropout"])
    if kind == "tydi":
        from lmforge.tasks.tydi import TydiHead

        return TydiHead(hidden_size, dropout=head_config["dropout"])
    raise ValueError(f"unknown head kind {kind!r}")
