"""Taggers: answer validation, the LLM tagger over HTTP, the lexical tagger,
and the resumable tag stage."""

import json
import re

import numpy as np
import pytest

from audiopt.data import demo_world
from audiopt.data import journal
from audiopt.labels import tagger as tagger_lib
from audiopt.labels import vocabulary
# The local chat-completions server of the client tests.
from test_labels_client import ChatServer  # pylint: disable=g-bad-import-order
from test_labels_client import make_client  # pylint: disable=g-bad-import-order


def _demo_clips(n, seed=3):
  """(clip_id, scene, full caption) of n demo scenes."""
  out = []
  for i in range(n):
    rng = np.random.default_rng([seed, i])
    scene = demo_world.sample_scene(rng, f"demo-{i:03d}", duration_s=4.0)
    out.append((scene.clip_id, scene, demo_world.caption_scene(scene, rng)[0]))
  return out


def _write_caption_stage(stage_dir, clips):
  with journal.Journal(str(stage_dir)) as j:
    for clip_id, scene, full in clips:
      j.add_result(clip_id, caption=full, strong_caption="",
                   domain=scene.domain, source="demo")


# ----------------------------------------------------------------------------
# Answer validation.


@pytest.mark.parametrize("answer,labels", [
    ('{"labels": ["indoor", "speech", "male"]}', ["indoor", "speech", "male"]),
    ('```json\n{"labels": ["lo-fi", "Hip-Hop"]}\n```', ["lo-fi", "hip-hop"]),
    ('  ```\n{"labels": ["rain", "rain", "thunder"]}```  ',
     ["rain", "thunder"]),
    ('{"labels": ["1980s", "8-bit", "synth"], "note": "x"}',
     ["1980s", "8-bit", "synth"]),
])
def test_parse_labels_accepts_and_tidies(answer, labels):
  assert tagger_lib.parse_labels(answer) == labels


@pytest.mark.parametrize("answer,error", [
    ("Here are the tags: indoor, speech", "not valid JSON"),
    ('["indoor", "speech"]', "JSON object"),
    ('{"tags": ["indoor"]}', '"labels" key'),
    ('{"labels": "indoor, speech"}', "list of strings"),
    ('{"labels": ["indoor", 3]}', "not a string"),
    ('{"labels": ["hip hop"]}', "one lowercase word"),
    ('{"labels": ["high_fidelity"]}', "one lowercase word"),
    ('{"labels": ["-reverb"]}', "one lowercase word"),
    ('{"labels": []}', "between 1 and 10"),
    (json.dumps({"labels": [f"t{i}" for i in range(11)]}), "between 1 and 10"),
])
def test_parse_labels_rejects(answer, error):
  with pytest.raises(ValueError, match=re.escape(error)):
    tagger_lib.parse_labels(answer)


def test_prompt_states_the_rules():
  (system, user) = tagger_lib.LLMTagger.messages("A dog barks.")
  assert system["role"] == "system" and user["role"] == "user"
  text = user["content"]
  for needle in ("ONE lowercase English word", "at least 5 and at most 10",
                 '"car", never "automobile"', "scene or environment",
                 "sound sources", "sound types or events",
                 "audio or production traits",
                 "semantic function or intent", '{"labels": [',
                 "A dog barks."):
    assert needle in text


# ----------------------------------------------------------------------------
# The LLM tagger over a real local server.


def _tag_backend(answers):
  """A backend answering from `answers(caption, retried) -> text`."""

  def backend(body):
    messages = body["messages"]
    caption = messages[1]["content"].split("Description:\n", 1)[1]
    return answers(caption, len(messages) > 2)

  return backend


def test_llm_tagger_request_and_answer():
  seen = []

  def answers(caption, retried):
    return json.dumps({"labels": sorted(set(re.findall(r"[a-z]+",
                                                       caption.lower())))})

  backend = _tag_backend(answers)
  with ChatServer(lambda body: seen.append(body) or backend(body)) as server:
    tagger = tagger_lib.LLMTagger(make_client(server.url), model="qwen-7b")
    tags = tagger.tag("c1", "Dog and rain.")
  assert tags == ["and", "dog", "rain"]
  assert seen[0]["model"] == "qwen-7b"
  assert (seen[0]["temperature"], seen[0]["top_p"],
          seen[0]["max_tokens"]) == (0.3, 0.9, 512)
  assert "response_format" not in seen[0]


def test_llm_tagger_retries_once_with_the_error():
  seen = []

  def answers(caption, retried):
    if "always bad" in caption:
      return "indoor, speech"
    if retried:
      return '{"labels": ["indoor", "speech"]}'
    return '{"labels": ["Indoor Room", "speech"]}'

  backend = _tag_backend(answers)
  with ChatServer(lambda body: seen.append(body) or backend(body)) as server:
    tagger = tagger_lib.LLMTagger(make_client(server.url))
    out = tagger.tag_batch([("a", "fixable"), ("b", "always bad"),
                            ("c", "fixable too")])
  assert out[0] == ["indoor", "speech"] and out[2] == ["indoor", "speech"]
  assert isinstance(out[1], tagger_lib.TagError) and out[1].kind == "malformed"
  assert "not valid JSON" in str(out[1])
  retry = [b for b in seen if len(b["messages"]) == 4]
  assert len(retry) == 3 and len(seen) == 6  # one retry each, no more
  conversation = next(b["messages"] for b in retry
                      if "fixable\n" in b["messages"][1]["content"] + "\n")
  assert conversation[2] == {"role": "assistant",
                             "content": '{"labels": ["Indoor Room", "speech"]}'}
  assert "not one lowercase word" in conversation[3]["content"]


def test_tag_stage_with_llm_tagger(tmp_path):
  clips = _demo_clips(12)
  _write_caption_stage(tmp_path / "captions", clips)
  bad = clips[4][2]

  def answers(caption, retried):
    if caption == bad:
      return "no json here"
    lexical = tagger_lib.LexicalTagger().tags(caption)
    return "```json\n" + json.dumps({"labels": lexical}) + "\n```"

  def faults(body, attempt):
    caption = body["messages"][1]["content"]
    return "500" if clips[7][2] in caption else (
        "429" if attempt == 1 else None)

  with ChatServer(_tag_backend(answers), faults=faults) as server:
    tagger = tagger_lib.LLMTagger(make_client(server.url, max_retries=2))
    summary = tagger_lib.run_tag_stage(str(tmp_path / "captions"),
                                       str(tmp_path / "tags"), tagger,
                                       batch_size=5, progress=False)
  assert summary["tagged"] == 10
  assert summary["failures"] == {"malformed": 1, "endpoint": 1}
  rows = {r["id"]: r for r in journal.read_results(str(tmp_path / "tags"))}
  assert set(rows) == {c[0] for c in clips} - {clips[4][0], clips[7][0]}
  for clip_id, scene, _ in clips:
    if clip_id in rows:
      assert rows[clip_id]["domain"] == scene.domain
      assert rows[clip_id]["tags"]
  reasons = {q["id"]: q
             for q in journal.read_quarantine(str(tmp_path / "tags"))}
  assert reasons[clips[7][0]]["kind"] == "endpoint"
  assert "HTTP 500" in reasons[clips[7][0]]["reason"]


# ----------------------------------------------------------------------------
# The lexical tagger.

_SOURCE_TAG = {"rain": "rain", "siren": "siren", "dog_bark": "dog",
               "alarm": "alarm", "engine": "engine", "speech": "speech",
               "wind": "wind", "birdsong": "bird", "footsteps": "footstep",
               "knocking": "knocking", "crowd": "crowd"}
_INSTRUMENT_TAG = {"voice": "singing", "strings": "string"}


def test_lexical_tagger_on_demo_captions():
  tagger = tagger_lib.LexicalTagger()
  normalise = vocabulary.TagNormaliser()
  found = total = 0
  for _, scene, full in _demo_clips(80):
    tags = tagger.tags(full)
    assert 1 <= len(tags) <= 10
    assert tagger_lib.parse_labels(json.dumps({"labels": tags})) == tags
    assert all(normalise(t) == t for t in tags)  # canonical already
    wants = {_INSTRUMENT_TAG.get(e.attributes["instrument"],
                                 e.attributes["instrument"])
             if e.kind == "music" else _SOURCE_TAG[e.kind]
             for e in scene.events}
    if len(wants) <= 3:  # more sources than that overflow the 10 tags
      total += len(wants)
      found += sum(normalise(w) in tags for w in wants)
    truth = set(normalise.normalise_set(demo_world.scene_tags(scene)))
    assert len(truth & set(tags)) >= 3
  assert total > 60 and found / total > 0.8


def test_lexical_tagger_synonyms_inflections_negation():
  tagger = tagger_lib.LexicalTagger()
  tags = tagger.tags(
      "An automobile drives past while two men talk. Drums and reverberant "
      "guitars play hip hop in a studio. There is no audible hiss, and the "
      "sound is free of distortion; without any sirens.")
  for want in ("car", "male", "speaking", "drum", "guitar", "reverb",
               "hip-hop", "studio"):
    assert want in tags, (want, tags)
  for unwanted in ("hiss", "distortion", "siren", "automobile", "drums",
                   "reverberant"):
    assert unwanted not in tags
  assert len(tagger.tags(" ".join(["dog barks, cat, piano, rain, wind, "
                                   "siren, alarm, guitar, car, church, "
                                   "organ, violin, choir"] * 2))) == 10
  assert tagger.vocabulary_size >= 300


def test_lexical_tagger_empty_caption_is_an_error():
  out = tagger_lib.LexicalTagger().tag_batch([("x", "Zzz qqq.")])
  assert isinstance(out[0], tagger_lib.TagError) and out[0].kind == "empty"


def test_tag_stage_resumes_and_shards(tmp_path):
  clips = _demo_clips(30)
  _write_caption_stage(tmp_path / "captions", clips)
  tags_dir = str(tmp_path / "tags")
  tagger = tagger_lib.LexicalTagger()
  # A first run that stopped after some clips of shard 0 of 2.
  with journal.Journal(tags_dir, 0, 2) as j:
    done = [c for c in clips if tagger_lib.captioner_lib.in_shard(c[0], 0, 2)]
    for clip_id, _, _ in done[:4]:
      j.add_result(clip_id, tags=["earlier"], domain="", source="",
                   tagger="lexical")
  summaries = [tagger_lib.run_tag_stage(str(tmp_path / "captions"), tags_dir,
                                        tagger, shard_index=s, num_shards=2,
                                        batch_size=4, progress=False)
               for s in range(2)]
  assert summaries[0]["resumed"] == 4
  assert summaries[0]["tagged"] + summaries[1]["tagged"] == 26
  rows = list(journal.read_results(tags_dir))
  assert sorted(r["id"] for r in rows) == sorted(c[0] for c in clips)
  again = tagger_lib.run_tag_stage(str(tmp_path / "captions"), tags_dir,
                                   tagger, shard_index=1, num_shards=2,
                                   progress=False)
  assert again["tagged"] == 0
