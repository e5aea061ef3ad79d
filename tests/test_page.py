"""flcore.present.page: a chapter page's tables, figures and download files."""

from flcore.present import figures, page


def test_show_table_and_show_figure_write_their_files(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    monkeypatch.setattr(page, "DOWNLOADS", tmp_path)
    page.start_page("demo", "default")
    assert matplotlib.rcParams["figure.dpi"] == figures.FIG_DPI
    page.show_table(pd.DataFrame({"main": ["66.7 ± 10.4"]}), "a table", data=pd.DataFrame({"main": [66.7]}))
    fig, ax = plt.subplots(figsize=(12, 4))  # wider than the column
    ax.plot([0, 1], [0, 1], label="a line with a long label")
    figures.legend_outside(ax)
    page.show_figure(fig, "curve")
    files = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert files == ["curve.png", "curve.svg", "table-1.csv"]
    assert pd.read_csv(tmp_path / "demo" / "table-1.csv")["main"].tolist() == [66.7]
    png = (tmp_path / "demo" / "curve.png").read_bytes()
    width = int.from_bytes(png[16:20], "big") / (2 * figures.FIG_DPI)  # inches, legend included
    assert abs(width - figures.FIG_WIDTH_IN) < 0.1
    assert not plt.get_fignums()  # shown figures are closed
    assert "--only demo" in page.regenerate_command()
    page.start_page("demo", "default")  # a page's old files go
    assert list((tmp_path / "demo").iterdir()) == []
