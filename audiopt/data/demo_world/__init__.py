"""The embedded demo world: procedural audio with true captions and labels.

A clip starts as a `Scene`: `Event`s (kind, time span, attributes) plus
scene traits (scene class, room, production). Audio (`render_scene`),
captions (`caption_scene`), weak labels (`weak_labels`), reference tags
(`scene_tags`), ground truth (`ground_truth`) and task targets
(`sample_task_clip`) all derive from it, so every label is a true property
of the sound. Everything is numpy/scipy and seeded: the same seed gives
bit-identical audio and text (with the same numpy and scipy builds).

Modules: `speech` (source-filter voices, speakers, emotions, languages),
`music` (instruments, harmony, drum kits, genres), `environment` (ten
environmental sound kinds), `scene` (events, scene classes, room impulse
responses and the production chain), `captions`, `labels`, `tasks` (the
held-out evaluation tasks), `world` (the `data.demo` config section) and
`corpus` (clip generation, in parallel). `audiopt.data.prepare` writes the
world's records through the labelling pipeline's own stages.

Grow the world by adding an event kind: its attribute spec and renderer in
`environment` (or a new module registered in `scene`), caption phrases in
`captions`, and its weak label in `labels`.
"""

from audiopt.data.demo_world.captions import caption_scene
from audiopt.data.demo_world.captions import mentions
from audiopt.data.demo_world.core import DEFAULT_DURATION_RANGE
from audiopt.data.demo_world.core import DOMAINS
from audiopt.data.demo_world.core import Draw
from audiopt.data.demo_world.core import MAX_DURATION_S
from audiopt.data.demo_world.core import MIN_DURATION_S
from audiopt.data.demo_world.core import Restrictions
from audiopt.data.demo_world.core import SAMPLE_RATE
from audiopt.data.demo_world.core import SOURCE_NAME
from audiopt.data.demo_world.corpus import ClipJob
from audiopt.data.demo_world.corpus import ClipPool
from audiopt.data.demo_world.corpus import generate_corpus
from audiopt.data.demo_world.corpus import generate_task
from audiopt.data.demo_world.corpus import make_clip
from audiopt.data.demo_world.environment import KINDS as SOUND_KINDS
from audiopt.data.demo_world.labels import WEAK_LABEL_NAMES
from audiopt.data.demo_world.labels import ground_truth
from audiopt.data.demo_world.labels import scene_tags
from audiopt.data.demo_world.labels import true_weak_labels
from audiopt.data.demo_world.labels import weak_labels
from audiopt.data.demo_world.music import GENRE_NAMES as GENRES
from audiopt.data.demo_world.music import INSTRUMENTS
from audiopt.data.demo_world.music import PITCHED
from audiopt.data.demo_world.scene import EVENT_KINDS
from audiopt.data.demo_world.scene import SCENES
from audiopt.data.demo_world.scene import Event
from audiopt.data.demo_world.scene import Scene
from audiopt.data.demo_world.scene import domain_of
from audiopt.data.demo_world.scene import event_attribute_names
from audiopt.data.demo_world.scene import render_scene
from audiopt.data.demo_world.scene import sample_scene
from audiopt.data.demo_world.scene import validate_scene
from audiopt.data.demo_world.speech import EMOTIONS
from audiopt.data.demo_world.speech import LANGUAGES
from audiopt.data.demo_world.tasks import PROBE_TASKS
from audiopt.data.demo_world.tasks import TASK_NAMES
from audiopt.data.demo_world.tasks import TASKS
from audiopt.data.demo_world.tasks import sample_task_clip
from audiopt.data.demo_world.world import WorldConfig
from audiopt.data.demo_world.world import parse_restrictions

__all__ = [
    "caption_scene",
    "mentions",
    "DEFAULT_DURATION_RANGE",
    "DOMAINS",
    "Draw",
    "MAX_DURATION_S",
    "MIN_DURATION_S",
    "Restrictions",
    "SAMPLE_RATE",
    "SOURCE_NAME",
    "ClipJob",
    "ClipPool",
    "generate_corpus",
    "generate_task",
    "make_clip",
    "SOUND_KINDS",
    "WEAK_LABEL_NAMES",
    "ground_truth",
    "scene_tags",
    "true_weak_labels",
    "weak_labels",
    "GENRES",
    "INSTRUMENTS",
    "PITCHED",
    "EVENT_KINDS",
    "SCENES",
    "Event",
    "Scene",
    "domain_of",
    "event_attribute_names",
    "render_scene",
    "sample_scene",
    "validate_scene",
    "EMOTIONS",
    "LANGUAGES",
    "PROBE_TASKS",
    "TASK_NAMES",
    "TASKS",
    "sample_task_clip",
    "WorldConfig",
    "parse_restrictions",
]
