"""flcore.present.figures: the book's matplotlib helpers (Agg backend)."""

from flcore.analysis import rounds
from flcore.core.names import CLIENT_NAMES
from flcore.present import figures
from synthetic_runs import doc


def test_plot_lines_band_for_seeds():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = rounds.rounds_frame([doc(h="1" * 16), doc(h="2" * 16, seed=1)], keys=["client_defense"])
    fig, ax = plt.subplots()
    figures.plot_lines(ax, f, "client_defense", "backdoor_acc", names=CLIENT_NAMES)
    assert [l.get_label() for l in ax.lines] == ["None"]
    assert len(ax.collections) == 1  # the band over the two seeds
    plt.close(fig)


def test_symlog_label_marks_decades_only():
    assert figures.symlog_label(0, 1e-3) == "0"
    assert figures.symlog_label(1e-2, 1e-3) == "$10^{-2}$" and figures.symlog_label(-100, 1e-3) == "$-10^{2}$"
    assert figures.symlog_label(1e-3, 1e-3) == "" and figures.symlog_label(3e-2, 1e-3) == ""


def test_symlog_formatter_labels_like_symlog_label():
    fmt = figures.symlog_formatter(1e-3)
    assert [fmt(v, i) for i, v in enumerate((0, 1e-2, -100, 1e-3, 3e-2))] == [
        figures.symlog_label(v, 1e-3) for v in (0, 1e-2, -100, 1e-3, 3e-2)]


def test_round_ticks_and_the_symlog_round_axis():
    assert figures.round_ticks(50, 6000) == [0, 50, 1000, 5999]   # 100 is within 3x of 50: left out
    assert figures.round_ticks(10, 6000) == [0, 10, 100, 1000, 5999]
    assert figures.round_ticks(50, 200) == [0, 50, 199]
    assert figures.round_ticks(10, 12) == [0, 10, 11]
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 50, 5999], [1, 2, 3])
    figures.symlog_rounds(ax, 50, 6000)
    fig.canvas.draw()
    assert ax.get_xscale() == "symlog" and ax.get_xlim() == (0, 5999)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "50", "1,000", "5,999"]
    plt.close(fig)


def test_schedule_rounds_figure_one_row_per_schedule_one_line_per_defense():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = [doc(h="1" * 16, schedule="random"), doc(h="2" * 16, schedule="periodic", client="leadfl"),
            doc(h="3" * 16, schedule="periodic")]
    frame = rounds.rounds_frame(docs, keys=["schedule", "client_defense"])
    fig = figures.schedule_rounds_figure(docs, frame, {d["hash"]: [0] for d in docs}, "title")
    axes = fig.axes[:4]  # periodic and random x main-task and backdoor; then the bars' twin axes
    assert len(fig.axes) == 6 and [ax.get_ylabel() for ax in fig.axes[4:]] == ["malicious / round"] * 2
    assert [ax.get_title() for ax in axes[:2]] == ["periodic bursts: main-task accuracy", "periodic bursts: backdoor accuracy"]
    assert axes[2].get_title().startswith("random selection")
    assert sorted(l.get_label() for l in axes[0].lines) == ["LeadFL", "None"]
    assert fig._suptitle.get_text() == "title"
    plt.close(fig)


def _alpha_docs():
    def run(h, client, alpha, seed, bd):
        rs = [{"round": r, "selected": list(range(1, 11)), "malicious": [1, 2, 3, 4, 5, 6] if r < 2 else [],
               "main_acc": 0.8, "backdoor_acc": bd} for r in range(4)]
        return doc(h=h * 16, client=client, seed=seed, rounds=rs, schedule="periodic", leadfl={"alpha": alpha},
                   summary={"main_acc_final": 0.8 - (alpha / 10 if client == "leadfl" else 0), "backdoor_acc_avg": bd, "backdoor_acc_final": bd})

    return [run("1", "none", 0.4, 0, 0.9), run("2", "none", 0.4, 1, 0.95), run("3", "leadfl", 0.4, 0, 0.5),
            run("4", "leadfl", 0.8, 0, 0.3)]


def test_setting_rounds_figure_one_line_per_setting_in_the_book_order():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flcore.analysis import labels

    docs = _alpha_docs()
    frame = rounds.rounds_frame(docs)
    frame["setting"] = frame["run"].map({d["hash"]: labels.defense_label(d) for d in docs})
    fig = figures.setting_rounds_figure(docs, frame, "title")
    top, bottom = fig.axes[:2]
    assert [l.get_label() for l in top.lines] == ["no defense", "LeadFL, α = 0.4", "LeadFL, α = 0.8"]
    assert top.lines[0].get_linestyle() == "--" and bottom.get_ylim() == (75.0, 100.0)
    assert fig._suptitle.get_text() == "title"
    plt.close(fig)


def test_trade_off_figure_marks_the_pick_and_the_front():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flcore.analysis import tables

    trade = tables.trade_frame(_alpha_docs())
    choice = tables.alpha_choice(trade, 10.0)
    fig, front = figures.trade_off_figure(trade, choice, 10.0, "t")
    assert trade.iloc[choice["pick"]]["setting"] == "LeadFL, α = 0.8"
    assert [trade.iloc[i]["setting"] for i in front] == ["LeadFL, α = 0.8", "LeadFL, α = 0.4", "no defense"]
    ax = fig.axes[0]
    floor = [l for l in ax.lines if l.get_label().startswith("main-task floor")]
    assert len(floor) == 1 and floor[0].get_ydata()[0] == choice["reference_main"] - 10.0
    plt.close(fig)


def test_cycle_profile_figure_needs_a_periodic_run():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = _alpha_docs()
    frame = rounds.rounds_frame(docs, keys=["schedule", "client_defense"])
    fig = figures.cycle_profile_figure(docs, frame, "t")
    ax = fig.axes[0]
    assert [l.get_label() for l in ax.lines] == ["None", "LeadFL"]
    assert figures.cycle_profile_figure([doc(schedule="random")], frame, "t") is None
    plt.close(fig)
