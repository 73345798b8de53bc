"""PDFs: table rows as Markdown, headings and outlines as section paths, OCR of scanned pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.errors import FileRejected
from ingest.loaders import LoadStats, load_file
from tests.conftest import shared_data

MB = 2**20

WORDS = (
    "The warranty covers parts and labour for three years from the date of purchase. "
    "Claims are filed with the original receipt at any authorised store. "
    "Error E116 means the water inlet valve is blocked; clean the filter and restart. "
    "Batteries older than ten years are recycled free of charge by the maker."
)


def text_pdf(path: Path, pages: list[list[tuple[float, float, float, str]]]) -> Path:
    """Write a PDF whose pages show text runs (x, y, font size, text) in Helvetica."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for runs in pages:
        ops = "".join(f"BT /F1 {size} Tf {x} {y} Td ({text}) Tj ET\n" for x, y, size, text in runs)
        objects.append(f"<< /Length {len(ops)} >>\nstream\n{ops}endstream")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objects)} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>"
        )
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer << /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)
    return path


def scanned_pdf(path: Path, paragraphs: list[str]) -> Path:
    """Write a PDF of image-only pages, one per paragraph, the text drawn by Pillow."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype("DejaVuSans.ttf", 30)
    except OSError:
        font = ImageFont.load_default(size=30)
    images = []
    for paragraph in paragraphs:
        image = Image.new("RGB", (1275, 1650), "white")
        draw = ImageDraw.Draw(image)
        for row, line in enumerate(textwrap.wrap(paragraph, 60)):
            draw.text((100, 150 + 55 * row), line, fill="black", font=font)
        images.append(image)
    images[0].save(path, save_all=True, append_images=images[1:], resolution=150)
    return path


STATEMENT = [
    (72, 720, 18, "Consolidated Statement of Cash Flows"),
    (72, 690, 10, "Years ended December 31"),
    (72, 660, 10, "(Millions)"),
    (400, 660, 10, "2022"),
    (480, 660, 10, "2021"),
    (72, 640, 10, "Net income"),
    (400, 640, 10, "5,777"),
    (480, 640, 10, "5,921"),
    (72, 620, 10, "Purchases of property, plant and equipment"),
    (400, 620, 10, "(1,749)"),
    (480, 620, 10, "(1,603)"),
    (72, 600, 10, "Investing activities"),
    (72, 580, 10, "Proceeds from sale of businesses"),
    (400, 580, 10, "4,050"),
    (480, 580, 10, "1"),
    (72, 540, 10, "The accompanying notes are an integral part of this statement."),
]


def test_table_rows_keep_their_cells_in_order_as_markdown(tmp_path: Path) -> None:
    stats = LoadStats()
    sections = load_file(text_pdf(tmp_path / "cash.pdf", [STATEMENT]), 64 * MB, stats=stats)
    text = "\n".join(s.text for s in sections)
    assert "| (Millions) | 2022 | 2021 |\n| --- | --- | --- |" in text
    assert "| Purchases of property, plant and equipment | (1,749) | (1,603) |" in text
    assert "| Investing activities |" in text  # a row label inside the table stays in it
    assert "\nThe accompanying notes are an integral part of this statement." in text  # prose is not a row
    assert stats.table_seconds > 0 and stats.ocr_pages == 0


def test_larger_lines_are_headings(tmp_path: Path) -> None:
    sections = load_file(text_pdf(tmp_path / "cash.pdf", [STATEMENT]), 64 * MB)
    assert {s.section for s in sections} == {"Consolidated Statement of Cash Flows"}


PLAN = "The plan covers every site of the group, from the warehouses in the north to the shops in the south."
PILOT = "Lyon and Porto run the pilot for the first six months and report to the steering group every week."


def test_a_heading_with_nothing_under_it_goes_on_with_the_next_section(tmp_path: Path) -> None:
    page = [(72, 720, 18, "PART II"), (72, 690, 14, "Results of operations"), (72, 660, 10, PLAN)]
    sections = load_file(text_pdf(tmp_path / "report.pdf", [page]), 64 * MB)
    assert [(s.text, s.section) for s in sections] == [
        (f"PART II\nResults of operations\n{PLAN}", "PART II > Results of operations")
    ]


def test_outline_gives_the_heading_path(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    plain = text_pdf(
        tmp_path / "plain.pdf",
        [
            [(72, 700, 11, "Overview"), (72, 680, 11, PLAN)],
            [(72, 700, 11, "Sites"), (72, 680, 11, PILOT), (72, 640, 11, "Costs")],
            [(72, 700, 11, "Each site reports its costs monthly.")],
        ],
    )
    writer = PdfWriter()
    for page in PdfReader(plain).pages:
        writer.add_page(page)
    top = writer.add_outline_item(title="Overview", page_number=0)
    sites = writer.add_outline_item(title="Sites", page_number=1, parent=top)
    writer.add_outline_item(title="Costs", page_number=1, parent=sites)
    path = tmp_path / "outlined.pdf"
    with open(path, "wb") as f:
        writer.write(f)
    by_text = {s.text.splitlines()[-1]: s for s in load_file(path, 64 * MB)}
    assert by_text[PLAN].section == "Overview"
    assert by_text[PILOT].section == "Overview > Sites"
    assert by_text["Costs"].section == "Overview > Sites > Costs"
    assert by_text["Each site reports its costs monthly."].section == "Overview > Sites > Costs"
    assert by_text["Each site reports its costs monthly."].page == 3


def test_running_headers_footers_and_page_numbers_are_left_out(tmp_path: Path) -> None:
    body = WORDS.split(". ")
    pages = [
        [
            (72, 750, 9, "Table of Contents"),
            (72, 700, 11, f"{body[i % len(body)].rstrip('.')}."),
            (72, 680, 11, f"Site {'ABCDE'[i]} reports its costs every month."),
            (300, 40, 9, str(41 + i)),
        ]
        for i in range(5)
    ]
    text = "\n".join(s.text for s in load_file(text_pdf(tmp_path / "filing.pdf", pages), 64 * MB))
    assert "Table of Contents" not in text and not re.search(r"^4[1-5]$", text, re.M)
    assert all(f"Site {x} reports its costs every month." in text for x in "ABCDE")  # the body stays
    # on fewer pages nothing is taken for page furniture
    short = "\n".join(s.text for s in load_file(text_pdf(tmp_path / "memo.pdf", pages[:3]), 64 * MB))
    assert short.count("Table of Contents") == 3


def test_lines_wrapped_in_print_are_joined_and_list_items_kept_apart(tmp_path: Path) -> None:
    page = [
        (72, 700, 11, "The warranty does not cover damage caused by any of the following:"),
        (72, 685, 11, "- Installation or repair by anyone who is not a Brightwell Certified"),
        (72, 670, 11, "Installer."),
        (72, 655, 11, "- Flooding, fire or lightning, and moving the battery after install-"),
        (72, 640, 11, "ation without an installer."),
        (72, 620, 11, "Claims are made in the app."),
        (72, 605, 11, "Each claim gets a reference number."),
    ]
    text = "\n".join(s.text for s in load_file(text_pdf(tmp_path / "terms.pdf", [page]), 64 * MB))
    assert text == (
        "The warranty does not cover damage caused by any of the following:\n"
        "- Installation or repair by anyone who is not a Brightwell Certified Installer.\n"
        "- Flooding, fire or lightning, and moving the battery after install-ation without an installer.\n"
        "Claims are made in the app.\n"
        "Each claim gets a reference number."
    )


def test_a_wrapped_row_label_joins_its_row_and_the_table_goes_on(tmp_path: Path) -> None:
    rows = [
        (72, 700, 10, "(Millions)"),
        (400, 700, 10, "2022"),
        (480, 700, 10, "2021"),
        (72, 680, 10, "Cash and due from banks"),
        (400, 680, 10, "5,510"),
        (480, 680, 10, "1,292"),
        (72, 660, 10, "Card Member receivables, including gross receivables available to settle obligations of a"),
        (72, 648, 10, "consolidated entity, less reserves"),
        (400, 648, 10, "57,384"),
        (480, 648, 10, "53,581"),
        (72, 628, 10, "Customer deposits"),
        (400, 628, 10, "110,239"),
        (480, 628, 10, "84,382"),
    ]
    text = "\n".join(s.text for s in load_file(text_pdf(tmp_path / "balance.pdf", [rows]), 64 * MB))
    assert (
        "| Card Member receivables, including gross receivables available to settle obligations of a "
        "consolidated entity, less reserves | 57,384 | 53,581 |\n| Customer deposits | 110,239 | 84,382 |"
    ) in text
    assert sum(line.startswith("| ---") for line in text.splitlines()) == 1  # one table, one header rule


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def test_scanned_pages_are_read_by_ocr_per_page(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    scan = scanned_pdf(tmp_path / "scan.pdf", [WORDS[:160], WORDS[160:]])
    text = text_pdf(tmp_path / "text.pdf", [[(72, 700, 11, "A page with a text layer.")]])
    writer = PdfWriter()
    for page in [*PdfReader(text).pages, *PdfReader(scan).pages]:
        writer.add_page(page)
    mixed = tmp_path / "mixed.pdf"
    with open(mixed, "wb") as f:
        writer.write(f)
    stats = LoadStats()
    sections = load_file(mixed, 64 * MB, stats=stats)
    assert stats.ocr_pages == 2 and stats.ocr_seconds > 0
    assert [(s.page, s.ocr) for s in sections] == [(1, False), (2, True), (3, True)]
    found = set(_words(" ".join(s.text for s in sections)))
    expected = _words(WORDS)
    assert sum(w in found for w in expected) >= 0.95 * len(expected)

    off = load_file(mixed, 64 * MB, ocr=False)
    assert [s.page for s in off] == [1]
    with pytest.raises(FileRejected, match="no text found"):
        load_file(scan, 64 * MB, ocr=False)


def test_a_scan_with_a_stamped_text_line_is_still_read_by_ocr(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=scanned_pdf(tmp_path / "scan.pdf", [WORDS[:160]]))
    stamp = text_pdf(tmp_path / "stamp.pdf", [[(72, 30, 9, "Confidential - page 1 of 1")]])
    writer.pages[0].merge_page(PdfReader(stamp).pages[0])
    stamped = tmp_path / "stamped.pdf"
    with open(stamped, "wb") as f:
        writer.write(f)
    sections = load_file(stamped, 64 * MB)
    assert sections[0].ocr and "warranty covers parts" in sections[0].text.lower()


@pytest.mark.slow
def test_scanned_example_docs_are_read() -> None:
    flat = shared_data("example-docs", "pdf", "loremipsum-flat.pdf")
    sections = load_file(flat, 64 * MB)
    assert all(s.ocr for s in sections)
    assert "lorem ipsum" in " ".join(s.text for s in sections).lower()
    # a scan that already has an OCR text layer is read from that layer
    layered = load_file(shared_data("example-docs", "pdf", "pdf-with-ocr-text.pdf"), 64 * MB)
    assert not any(s.ocr for s in layered)


@pytest.mark.slow
def test_financial_statement_rows_stay_whole() -> None:
    pdf = shared_data("financebench-dev", "pdfs", "3M_2022_10K.pdf")
    sections = load_file(pdf, 64 * MB)
    page = "\n".join(s.text for s in sections if s.page == 50)
    assert "| (Dollars in millions, except per share amount) | 2022 | 2021 |" in page
    assert "| Cash and cash equivalents | $ 3,655 | $ 4,564 |" in page


def test_ingest_stores_ocr_text_and_reports_the_pages(tiny_config, tmp_path: Path) -> None:
    import dataclasses

    from ingest import ingest
    from ingest.store import open_client, open_collection

    paragraphs = [
        WORDS,
        "Invoices are paid within thirty days. Late payments carry interest of two percent per month, "
        "and accounts overdue by ninety days are passed to collection.",
    ]
    scan = scanned_pdf(tmp_path / "scan.pdf", paragraphs)
    table = text_pdf(tmp_path / "cash.pdf", [STATEMENT])
    report = ingest([scan, table], tiny_config, progress=False)
    assert report.count("added") == 2 and report.ocr_pages == 2 and report.ocr_seconds > 0
    assert "2 pages OCR'd" in report.summary()
    collection = open_collection(
        open_client(tiny_config.home_path), tiny_config.collection, tiny_config.embedding_model, False
    )
    assert collection is not None
    got = collection.get(include=["documents", "metadatas"])
    scanned = [(d, m) for d, m in zip(got["documents"], got["metadatas"]) if m["file_name"] == "scan.pdf"]
    assert scanned and all(m["ocr"] is True for _, m in scanned)
    found = set(_words(" ".join(d for d, _ in scanned)))
    expected = _words(" ".join(paragraphs))
    assert sum(w in found for w in expected) >= 0.95 * len(expected)
    statement = [m for m in got["metadatas"] if m["file_name"] == "cash.pdf"]
    assert all("ocr" not in m for m in statement)
    # the title and heading path are indexed with each chunk, not part of its text
    assert all(m["context"].startswith("cash\nConsolidated Statement of Cash Flows") for m in statement)

    plain = dataclasses.replace(tiny_config, collection="plain", context_prefix=False, ocr=False)
    again = ingest([scan, table], plain, progress=False)
    assert again.ocr_pages == 0 and again.count("skipped") == 1
    metas = open_collection(open_client(plain.home_path), "plain", plain.embedding_model, False).get()["metadatas"]
    # without the prefix only a cut-off table's caption and header row are left to index with its chunk
    contexts = [m["context"] for m in metas if "context" in m]
    caption = "Consolidated Statement of Cash Flows\nYears ended December 31\n| (Millions) | 2022 | 2021 |"
    assert contexts and all(c.startswith(caption) for c in contexts)
    assert any("context" in m for m in metas) and any("context" not in m for m in metas)
