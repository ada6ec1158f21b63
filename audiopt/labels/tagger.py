"""The tag stage: a set of UTS tags per clip, read from its caption.

Backends:

- `LLMTagger`: the paper's set-up, Qwen2.5-7B-Instruct served by vLLM, with
  a five-aspect prompt asking for JSON `{"labels": [...]}` (PAPER.md
  section 1). Answers are validated (`parse_labels`); a malformed answer is
  asked again once, with the validation error appended to the conversation,
  then quarantined.
- `LexicalTagger`: an offline extractor over a curated lexicon of scene,
  source, speech, music, event, production and function words, with synonym
  and inflection collapse (automobile -> car, drums -> drum, reverberant ->
  reverb) and negation handling ("no audible reverberation" tags no reverb).
  It is the default of the demo, which runs with no server.

`run_tag_stage` tags every captioned clip once, resumable through the stage
journal. Tags are stored as the tagger gave them; the vocabulary stage
normalises them.
"""

from __future__ import annotations

import abc
import collections
import concurrent.futures
import json
import re
from typing import Any, Iterator, Mapping, Sequence

from absl import logging
import tqdm

from audiopt.data import journal as journal_lib
from audiopt.labels import captioner as captioner_lib
from audiopt.labels import client as client_lib
from audiopt.labels import vocabulary

DEFAULT_TAGGER_MODEL = "Qwen/Qwen2.5-7B-Instruct"
DEFAULT_SAMPLING = {"temperature": 0.3, "top_p": 0.9, "max_tokens": 512}

SYSTEM_PROMPT = ("You tag audio clips from their written descriptions. "
                 "You answer with a single JSON object and nothing else.")

USER_PROMPT = """Read the description of an audio clip below and tag it.

Rules:
- Give about 10 tags: at least 5 and at most 10.
- Each tag is ONE lowercase English word. A hyphen may join parts of one \
term ("hip-hop", "lo-fi"); no spaces, no underscores.
- Use the canonical, most common word for each concept so that tags are \
reusable across many clips: "car", never "automobile". No synonyms or \
near-duplicates of another tag, and no tag twice.
- Cover these five aspects wherever the description supports them:
  1. scene or environment (for example indoor, street, studio)
  2. sound sources (for example male, dog, guitar)
  3. sound types or events (for example speaking, barking, melody)
  4. audio or production traits (for example reverb, noisy, lo-fi)
  5. semantic function or intent (for example conversation, advertisement, \
ambience)
- Tag only what the description states.

Answer with exactly this JSON object and nothing else:
{{"labels": ["tag1", "tag2", ...]}}

Description:
{caption}"""

RETRY_PROMPT = ("That answer is invalid: {error}. Answer again with only the "
                "JSON object {{\"labels\": [...]}}, following every rule.")

_LABEL = re.compile(r"^[^\W_]+(?:-[^\W_]+)*$")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?\s*```$", re.S)


class TagError(RuntimeError):
  """A clip that could not be tagged.

  Attributes:
    kind: "endpoint", "malformed" (invalid answers) or "empty" (no tags).
  """

  def __init__(self, kind: str, message: str):
    super().__init__(message)
    self.kind = kind


def parse_labels(text: str, *, min_labels: int = 1, max_labels: int = 10
                 ) -> list[str]:
  """Validates a tagger answer and returns its labels.

  Tolerated and fixed silently: a ```json fenced block around the object,
  surrounding whitespace, upper case, and repeated labels (kept once).

  Args:
    text: the model's answer.
    min_labels: fewest distinct labels accepted.
    max_labels: most distinct labels accepted.

  Returns:
    The labels, lower case, in answer order, without repeats.

  Raises:
    ValueError: not a JSON object with a "labels" list of strings, a label
      that is not one word (letters and digits, hyphens between parts), or
      a count outside [min_labels, max_labels]. The message says which.
  """
  body = text.strip()
  fenced = _FENCE.match(body)
  if fenced:
    body = fenced.group(1).strip()
  try:
    answer = json.loads(body)
  except json.JSONDecodeError as e:
    raise ValueError(f"not valid JSON ({e.msg} at character {e.pos})") \
        from None
  if not isinstance(answer, dict) or "labels" not in answer:
    raise ValueError('expected a JSON object with a "labels" key')
  labels = answer["labels"]
  if not isinstance(labels, list):
    raise ValueError('"labels" must be a list of strings')
  out = []
  for label in labels:
    if not isinstance(label, str):
      raise ValueError(f"label {label!r} is not a string")
    tag = label.strip().lower()
    if not _LABEL.match(tag):
      raise ValueError(f"label {label!r} is not one lowercase word (letters "
                       "and digits, hyphens only between parts)")
    out.append(tag)
  out = list(dict.fromkeys(out))
  if not min_labels <= len(out) <= max_labels:
    raise ValueError(f"got {len(out)} distinct labels; give between "
                     f"{min_labels} and {max_labels}")
  return out


class Tagger(abc.ABC):
  """Turns captions into tag lists.

  Attributes:
    name: identifies the tagger in stage results.
  """

  name: str = "tagger"

  @abc.abstractmethod
  def tag_batch(self, items: Sequence[tuple[str, str]]
                ) -> list[list[str] | TagError]:
    """Tags several clips.

    Args:
      items: (clip_id, caption) pairs.

    Returns:
      One entry per item, in order: its tags, or the `TagError` that kept it
      from being tagged.
    """

  def tag(self, clip_id: str, caption: str) -> list[str]:
    """Tags one clip; raises its `TagError` on failure."""
    result = self.tag_batch([(clip_id, caption)])[0]
    if isinstance(result, TagError):
      raise result
    return result


class LLMTagger(Tagger):
  """Tags with an instruction-tuned LLM behind an OpenAI-compatible API.

  Args:
    client: the chat client (its pool bounds the concurrency).
    model: the served model name.
    min_labels: fewest labels an answer may hold.
    max_labels: most labels an answer may hold.
    json_mode: also send response_format {"type": "json_object"} (vLLM's
      guided decoding); off by default, as in the paper.
    **sampling: overrides of `DEFAULT_SAMPLING` (temperature 0.3, top-p 0.9,
      max 512 tokens).
  """

  def __init__(self, client: client_lib.ChatClient, *,
               model: str = DEFAULT_TAGGER_MODEL, min_labels: int = 1,
               max_labels: int = 10, json_mode: bool = False,
               **sampling: Any):
    self.client = client
    self.model = model
    self.min_labels = min_labels
    self.max_labels = max_labels
    self.sampling = {**DEFAULT_SAMPLING, **sampling}
    if json_mode:
      self.sampling["response_format"] = {"type": "json_object"}
    self.name = f"openai:{model}"

  @staticmethod
  def messages(caption: str) -> list[dict[str, str]]:
    """The chat messages asking to tag `caption`."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PROMPT.format(
                caption=caption.strip())}]

  def _submit(self, messages) -> concurrent.futures.Future:
    return self.client.submit(messages, model=self.model, **self.sampling)

  def _check(self, future: concurrent.futures.Future
             ) -> tuple[list[str] | TagError | None, str, str]:
    """(labels | endpoint TagError | None if invalid, answer, error)."""
    try:
      answer = future.result().text
    except client_lib.ChatError as e:
      return TagError("endpoint", str(e)), "", ""
    try:
      return parse_labels(answer, min_labels=self.min_labels,
                          max_labels=self.max_labels), answer, ""
    except ValueError as e:
      return None, answer, str(e)

  def tag_batch(self, items: Sequence[tuple[str, str]]
                ) -> list[list[str] | TagError]:
    """Asks the LLM for every caption concurrently and once more where an
    answer does not parse; results in item order, failures as TagErrors."""
    conversations = [self.messages(caption) for _, caption in items]
    first = [self._check(f) for f in
             [self._submit(m) for m in conversations]]
    retries = {}
    for i, (result, answer, error) in enumerate(first):
      if result is None:
        retries[i] = (conversations[i] + [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": RETRY_PROMPT.format(error=error)}])
    futures = {i: self._submit(m) for i, m in retries.items()}
    results: list[list[str] | TagError] = []
    for i, (result, _, error) in enumerate(first):
      if i in futures:
        result, _, error2 = self._check(futures[i])
        if result is None:
          result = TagError("malformed", f"invalid tagger answer twice: "
                            f"{error}; then: {error2}")
      results.append(result)
    return results


# ----------------------------------------------------------------------------
# The lexical tagger.

# Entries: "tag" or "tag:extra,surface,forms". Event entries "gerund<stem"
# also match the stem's verb forms (bark, barks, barked). Plurals and other
# inflections are matched through `vocabulary.TagNormaliser` (drums -> drum,
# men -> male), as are the keys of the synonym map (automobile -> car).
LEXICON: dict[str, tuple[str, ...]] = {
    "scene": (
        "indoor:inside,interior,room", "outdoor:outside,open-air,outdoors",
        "studio", "street:road,sidewalk", "city:urban,downtown", "park",
        "forest:woods,woodland", "beach:shore,seaside", "ocean:sea",
        "river:stream,creek", "lake", "kitchen", "office", "classroom",
        "church:cathedral,chapel", "hall:auditorium", "stadium:arena",
        "restaurant:cafe,diner", "pub", "club:nightclub", "airport",
        "station:platform", "subway:metro,underground", "highway:motorway",
        "farm:barn", "garden:backyard,yard", "bathroom", "bedroom",
        "underwater", "countryside:rural", "jungle:rainforest", "desert",
        "mountain", "cave", "factory", "workshop:garage", "market:bazaar",
        "mall", "school", "hospital", "library", "gym", "pool", "playground",
        "zoo", "concert", "theater", "home:house,household",
        "nature:wilderness", "meadow", "traffic", "construction",
        "crowd", "cockpit", "cabin", "tunnel", "harbor:port,dock", "camp",
    ),
    "source": (
        "dog:puppy,hound", "cat:kitten", "bird:songbird", "rooster",
        "chicken:hen",
        "cow:cattle", "horse", "sheep", "goat", "pig", "duck", "goose",
        "frog", "insect", "cricket", "bee", "fly", "mosquito", "owl", "crow",
        "pigeon", "seagull:gull", "wolf", "lion", "monkey", "elephant",
        "animal", "car", "truck", "bus", "motorcycle", "train", "aircraft:jet",
        "helicopter", "boat", "ship", "bicycle:bike", "vehicle",
        "engine", "motor", "tire", "rain:raindrop,drizzle,downpour",
        "thunder:thunderstorm", "wind:breeze,gust", "water", "waterfall",
        "wave:surf", "fire:flame,campfire", "storm", "door", "clock",
        "telephone:smartphone,cellphone", "television", "radio", "computer",
        "keyboard", "vacuum", "microwave", "blender", "fan", "refrigerator",
        "dishwasher", "washing-machine", "air-conditioner", "toilet",
        "faucet:sink", "cutlery", "dish:plate",
        "glass", "paper", "bag", "hammer", "drill", "saw", "chainsaw",
        "lawnmower:mower", "machine", "machinery", "siren", "alarm", "bell",
        "horn", "whistle", "gun:rifle,pistol", "firework", "explosion",
        "footstep:footfall", "microphone", "printer", "typewriter",
        "coin", "zipper", "chair", "table", "window", "tool",
    ),
    "speech": (
        "speech:speaker,narrator,announcer,voice-over", "voice",
        "male:gentleman,guy,masculine", "female:lady,feminine",
        "child:toddler,boy,girl", "infant:baby", "adult", "elderly",
        "singer:vocalist", "choir:chorus", "audience",
        "conversation:dialogue,discussion", "monologue",
        "interview", "accent", "language", "english", "laughter",
    ),
    "music": (
        "music:song,tune", "guitar", "bass:bass-guitar,bassline",
        "drum:drum-kit,drumbeat", "piano", "organ", "violin:fiddle", "cello",
        "viola", "trumpet", "saxophone:sax", "flute", "clarinet", "harp",
        "synth:synthesizer", "percussion", "cymbal", "snare", "kick-drum",
        "hi-hat", "tambourine", "accordion", "harmonica", "banjo",
        "ukulele", "mandolin", "sitar", "trombone", "tuba", "orchestra",
        "vocal", "string", "brass", "woodwind", "xylophone",
        "marimba", "glockenspiel", "beat", "melody:melodic",
        "harmony:harmonic", "rhythm:rhythmic", "chord", "riff", "solo",
        "loop", "drum-machine", "rock", "pop", "jazz", "blues", "classical", "electronic",
        "techno", "hip-hop", "rap", "country", "folk", "reggae",
        "metal", "punk", "funk", "soul", "disco", "ambient", "orchestral",
        "cinematic", "dance", "edm", "dubstep", "trance", "gospel", "latin",
        "lo-fi", "acoustic", "instrumental", "chiptune", "opera", "ballad",
        "lullaby", "march", "waltz", "upbeat", "energetic", "calm:calming",
        "relaxing", "melancholic:melancholy", "sad", "happy:joyful",
        "cheerful", "uplifting", "tense", "dramatic", "aggressive",
        "peaceful", "mellow", "dreamy", "major", "minor",
    ),
    "event": (
        "speaking<speak:spoke,talks,talking,talk,talked,says,said,responds,"
        "respond,replies,reply",
        "whispering<whisper", "shouting<shout:yell,yells,yelling",
        "screaming<scream", "laughing<laugh:giggle,giggles,giggling,chuckle",
        "crying<cry:cries,sobbing,weeping", "singing<sing:sang,sings",
        "coughing<cough", "sneezing<sneeze", "breathing<breathe:breath",
        "applause:clapping,claps,applauding", "cheering<cheer",
        "walking<walk", "knocking<knock",
        "banging<bang", "crash", "thud", "clicking<click", "beeping<beep",
        "buzzing<buzz", "ringing<ring:rang", "rumble:rumbling,rumbles",
        "roaring<roar", "barking<bark", "meowing<meow", "chirping<chirp",
        "tweeting<tweet", "howling<howl", "growling<growl", "mooing<moo",
        "neighing<neigh", "crowing", "wailing<wail", "whistling",
        "splashing<splash", "dripping<drip", "pouring<pour",
        "rustling<rustle", "crackling", "sizzling<sizzle",
        "squeaking<squeak", "creaking<creak", "ticking<tick",
        "tapping<tap", "typing:keystroke", "idling<idle", "revving<rev",
        "honking<honk", "gunshot:gunfire", "rainfall:patter,patters,pattering",
        "blowing<blow", "flowing<flow", "humming:hums,hummed",
        "yelping<yelp", "slamming<slam", "scraping<scrape", "chopping<chop",
        "cooking<cook", "eating<eat:chewing", "drinking<drink",
        "snoring<snore", "strumming<strum",
        "drumming", "rapping",
    ),
    "production": (
        "reverb:reverberant,reverberation,echoey", "echo", "dry",
        "clean:pristine", "clear:crisp", "noisy", "noise", "hiss:hissing",
        "hum", "static", "distortion:distorted", "muffled:muted",
        "high-fidelity", "low-fidelity", "compressed", "white-noise",
        "stereo", "mono", "telephone-quality:band-limited",
        "crackle", "clipping:clipped", "live", "field-recording",
        "recording", "amateur", "professional", "close-mic", "distant",
        "loud", "quiet", "layered", "looped",
        "synthetic:synthesized", "processed", "vintage", "modern",
    ),
    "function": (
        "announcement", "advertisement:commercial,ad", "narration",
        "tutorial:lesson", "instruction", "lecture", "podcast",
        "broadcast", "news", "entertainment", "emergency", "warning",
        "ambience:ambient-sound,atmosphere", "meditation", "relaxation",
        "prayer", "sermon", "worship", "game:gameplay,gaming", "sport",
        "comedy", "storytelling:story", "documentary", "soundtrack",
        "jingle", "ringtone", "notification", "sound-effect", "transportation:transport",
        "communication", "celebration", "party", "ceremony", "wedding",
        "performance", "rehearsal", "demonstration",
        "question", "greeting", "argument", "debate", "presentation",
        "workout", "wildlife",
    ),
}

# Parent tags implied by a mention of any child (a piano is music).
IMPLIED: dict[str, frozenset[str]] = {
    "music": frozenset((
        "guitar", "bass", "drum", "piano", "organ", "violin", "cello",
        "viola", "trumpet", "saxophone", "flute", "clarinet", "harp", "synth",
        "percussion", "cymbal", "snare", "kick-drum", "hi-hat", "tambourine",
        "accordion", "harmonica", "banjo", "ukulele", "mandolin", "sitar",
        "trombone", "tuba", "orchestra", "xylophone", "marimba",
        "glockenspiel", "melody", "chord", "riff", "singing", "strumming")),
    "animal": frozenset((
        "dog", "cat", "bird", "rooster", "chicken", "cow", "horse", "sheep",
        "goat", "pig", "duck", "goose", "frog", "wolf", "lion", "monkey",
        "elephant", "owl", "crow", "pigeon", "seagull")),
    "vehicle": frozenset((
        "car", "truck", "bus", "motorcycle", "train", "aircraft",
        "helicopter", "boat", "ship", "engine")),
}
# Aspect order of the round-robin that picks tags.
_CATEGORY_ORDER = ("scene", "source", "speech", "music", "event",
                   "production", "function")
# Two-word phrases that name one tag.
_PHRASES = {
    ("hip", "hop"): "hip-hop", ("lo", "fi"): "lo-fi",
    ("sound", "effect"): "sound-effect", ("field", "recording"):
        "field-recording", ("high", "fidelity"): "high-fidelity",
    ("low", "fidelity"): "low-fidelity", ("drum", "machine"):
        "drum-machine", ("video", "game"): "game", ("white", "noise"):
        "white-noise", ("voice", "over"): "voice-over", ("drum", "kit"):
        "drum", ("kick", "drum"): "kick-drum", ("hi", "hat"): "hi-hat",
    ("washing", "machine"): "washing-machine", ("vacuum", "cleaner"):
        "vacuum", ("air", "conditioner"): "air-conditioner",
    ("background", "music"): "music", ("electric", "guitar"): "guitar",
    ("acoustic", "guitar"): "guitar", ("bass", "guitar"): "bass",
    ("telephone", "line"): "telephone-quality", ("band", "limited"):
        "telephone-quality", ("hall", "reverb"): "reverb",
}
_NEGATORS = frozenset(("no", "not", "without", "lacking", "lacks", "lack",
                       "absent", "absence", "never", "nor", "neither", "none",
                       "free", "isn't", "aren't", "doesn't", "don't",
                       "wasn't", "zero"))
_CLAUSE_BREAK = re.compile(r"[.;:!?]+|\b(?:but|though|although|yet|while|"
                           r"whereas)\b")
_WORD = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")


def _verb_forms(stem: str) -> tuple[str, ...]:
  """The stem, its third person and its past: bark, barks, barked."""
  if stem.endswith(("s", "x", "z", "ch", "sh")):
    third = stem + "es"
  elif stem.endswith("y") and stem[-2] not in "aeiou":
    third = stem[:-1] + "ies"
  else:
    third = stem + "s"
  past = stem + "d" if stem.endswith("e") else stem + "ed"
  return (stem, third, past)


def _build_surface_map(lexicon: Mapping[str, Sequence[str]],
                       normaliser: vocabulary.TagNormaliser
                       ) -> tuple[dict[str, tuple[str, str]], list[str]]:
  """surface word -> (canonical tag, category); and the category order."""
  surfaces: dict[str, tuple[str, str]] = {}
  for category, entries in lexicon.items():
    for entry in entries:
      head, _, extra = entry.partition(":")
      tag, _, stem = head.partition("<")
      canonical = normaliser(tag)
      if canonical is None:
        continue
      forms = [tag, *filter(None, extra.split(","))]
      if stem:
        forms += _verb_forms(stem)
      for form in forms:
        surfaces.setdefault(form, (canonical, category))
  order = [c for c in _CATEGORY_ORDER if c in lexicon]
  order += [c for c in lexicon if c not in order]
  return surfaces, order


class LexicalTagger(Tagger):
  """Offline tagger: lexicon look-up with synonym, inflection and negation
  handling.

  A word (or a two-word phrase such as "hip hop") found in the lexicon gives
  its canonical tag unless a negator ("no", "without", "free of", ...)
  stands among the four words before it in the same clause. Tags are then
  picked round-robin over the aspects (scene, source, speech, music, event,
  production, function), each aspect's tags by mention count and first
  position, up to `max_tags`. A mention of a child in `IMPLIED` also gives
  its parent (piano -> music, dog -> animal).

  Args:
    max_tags: most tags per clip.
    lexicon: category -> entries (see `LEXICON`); None uses `LEXICON`.
    implied: parent tag -> child tags whose mention implies it (see
      `IMPLIED`); None uses `IMPLIED` with the default lexicon, nothing
      with a custom one.
    synonyms: synonym map for `vocabulary.TagNormaliser`; None: defaults.
  """

  name = "lexical"

  def __init__(self, *, max_tags: int = 10,
               lexicon: Mapping[str, Sequence[str]] | None = None,
               implied: Mapping[str, frozenset[str]] | None = None,
               synonyms: Mapping[str, str | None] | None = None):
    self.max_tags = max_tags
    if implied is None:
      implied = IMPLIED if lexicon is None else {}
    self._implied = dict(implied)
    self._normaliser = vocabulary.TagNormaliser(synonyms)
    self._surfaces, self._order = _build_surface_map(
        LEXICON if lexicon is None else lexicon, self._normaliser)

  @property
  def tag_names(self) -> list[str]:
    """The distinct tags the lexicon can produce, sorted."""
    return sorted({tag for tag, _ in self._surfaces.values()} |
                  set(self._implied))

  @property
  def vocabulary_size(self) -> int:
    """How many distinct tags the lexicon can produce."""
    return len(self.tag_names)

  def _lookup(self, word: str) -> tuple[str, str] | None:
    """(tag, category) of a word or its normalised form (men -> male)."""
    hit = self._surfaces.get(word)
    if hit is None:
      canonical = self._normaliser(word)
      hit = self._surfaces.get(canonical) if canonical else None
    return hit

  def _mentions(self, caption: str) -> Iterator[tuple[str, str]]:
    """Yields (tag, category) per non-negated mention, in text order."""
    for clause in _CLAUSE_BREAK.split(caption.lower()):
      words = _WORD.findall(clause)
      i = 0
      while i < len(words):
        window = words[max(0, i - 4):i]
        negated = any(w in _NEGATORS for w in window)
        phrase = _PHRASES.get(tuple(words[i:i + 2]))
        if phrase is not None:
          hit = self._lookup(phrase) or (phrase, "source")
          if not negated:
            yield hit
          i += 2
          continue
        word = words[i]
        hits = [self._lookup(word)]
        if hits[0] is None and "-" in word:
          hits = [self._lookup(p) for p in word.split("-")]
        for hit in hits:
          if hit is not None and not negated:
            yield hit
        i += 1

  def tags(self, caption: str) -> list[str]:
    """The tags of one caption (possibly empty)."""
    count: collections.Counter = collections.Counter()
    first: dict[str, int] = {}
    category_of: dict[str, str] = {}
    for position, (tag, category) in enumerate(self._mentions(caption)):
      count[tag] += 1
      first.setdefault(tag, position)
      category_of.setdefault(tag, category)
    for parent, children in self._implied.items():
      mentioned = [t for t in count if t in children]
      if mentioned and parent not in count:
        count[parent] = 1
        first[parent] = min(first[t] for t in mentioned)
        category_of[parent] = self._surfaces.get(
            parent, (parent, category_of[mentioned[0]]))[1]
    queues = {c: [] for c in self._order}
    for tag in sorted(count, key=lambda t: (-count[t], first[t])):
      queues.setdefault(category_of[tag], []).append(tag)
    picked: list[str] = []
    while len(picked) < self.max_tags and any(queues.values()):
      for category in self._order:
        if queues[category] and len(picked) < self.max_tags:
          picked.append(queues[category].pop(0))
    return picked

  def tag_batch(self, items: Sequence[tuple[str, str]]
                ) -> list[list[str] | TagError]:
    """Tags from the caption's words and phrases; a caption with none
    becomes a TagError, in order."""
    out: list[list[str] | TagError] = []
    for _, caption in items:
      tags = self.tags(caption)
      out.append(tags if tags else
                 TagError("empty", "no lexicon word found in the caption"))
    return out


# ----------------------------------------------------------------------------
# The stage.


def run_tag_stage(caption_stage_dir: str, stage_dir: str, tagger: Tagger, *,
                  shard_index: int = 0, num_shards: int = 1,
                  batch_size: int = 64, field: str = "caption",
                  progress: bool = True) -> dict[str, Any]:
  """Tags every captioned clip of this shard once; resumable.

  It may run while the caption stage still writes: it tags the captions
  complete so far (a line being written is skipped), and a rerun picks up
  the rest.

  Args:
    caption_stage_dir: the caption stage directory (all its shards are read;
      this shard's clips are picked with `captioner.in_shard`).
    stage_dir: the tag stage directory.
    tagger: the tagger.
    shard_index: this shard, in [0, num_shards).
    num_shards: how many shards split the clips.
    batch_size: captions handed to the tagger at once.
    field: caption field to tag: "caption" (full, the paper's choice) or
      "strong_caption".
    progress: show a progress bar.

  Returns:
    Summary: "results", "quarantined", "resumed", "tagged", "failed",
    "failures" (kind -> count in this run), "tagger"; also written to
    `<stage_dir>/summary-<shard>.json`.

  Result rows: {"id", "tags", "domain", "source", "tagger"}; quarantine
  rows: {"id", "reason", "kind", "tagger"}.
  """
  tagged = failed = 0
  failures: dict[str, int] = {}
  with journal_lib.Journal(stage_dir, shard_index, num_shards) as journal:
    seen: set[str] = set()
    bar = tqdm.tqdm(disable=not progress, unit="caption",
                    desc=f"tag {shard_index}/{num_shards}")

    def pending() -> Iterator[Mapping[str, Any]]:
      for row in journal_lib.read_results(caption_stage_dir):
        bar.update(1)
        clip_id = str(row["id"])
        if (captioner_lib.in_shard(clip_id, shard_index, num_shards)
            and not journal.is_done(clip_id) and clip_id not in seen):
          seen.add(clip_id)
          yield row

    with bar:
      for batch in captioner_lib.batched(pending(), batch_size):
        results = tagger.tag_batch([(str(r["id"]), str(r.get(field) or ""))
                                    for r in batch])
        for row, result in zip(batch, results):
          clip_id = str(row["id"])
          if isinstance(result, TagError):
            journal.quarantine(clip_id, str(result), kind=result.kind,
                               tagger=tagger.name)
            failed += 1
            failures[result.kind] = failures.get(result.kind, 0) + 1
          else:
            journal.add_result(clip_id, tags=result,
                               domain=str(row.get("domain") or ""),
                               source=str(row.get("source") or ""),
                               tagger=tagger.name)
            tagged += 1
    summary = {**journal.summary(), "tagged": tagged, "failed": failed,
               "failures": failures, "tagger": tagger.name}
  captioner_lib.write_stage_summary(stage_dir, shard_index, num_shards,
                                    summary)
  logging.info("tag stage %s shard %d/%d: %s", stage_dir, shard_index,
               num_shards, summary)
  return summary
