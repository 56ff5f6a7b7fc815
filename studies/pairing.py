"""C1 (pretraining helps: ViLBERT against ViLBERT†) task by task on the committed per-seed results of Table 1,
with Welch and with paired intervals side by side: what pairing the rows by seed changes.

    .venv/bin/python studies/pairing.py      # from the repository root; reads reports/tables/table1_long.csv
"""

from vilbert_lite.repro import reports

t1 = reports.read_long("reports/tables/table1_long.csv")
cols = [c for c in reports.COLUMNS if not c.startswith("zs_")] + ["zs_r@1"]
w = reports.compare(t1, "vilbert", "vilbert†", cols, pairing="welch").set_index("column")
p = reports.compare(t1, "vilbert", "vilbert†", cols, pairing="auto").set_index("column")
assert (p.test == "paired").all()
seeds = sorted(set(t1[t1.row == "vilbert"].seed))
print(f"seeds: {seeds}; auto pairing: {reports.paired(t1, 'vilbert', 'vilbert†')}")
print(
    "| task | ViLBERT − ViLBERT† | Welch 95% interval | Welch verdict | paired 95% interval | paired verdict | "
    "width paired / Welch |"
)
print("|---|---|---|---|---|---|---|")
for c in cols:
    a, b = w.loc[c], p.loc[c]
    print(
        f"| {reports.TASK_LABELS[c]} | {a['diff']:+.2f} | [{a.ci_low:+.2f}, {a.ci_high:+.2f}] | "
        f"{reports.GREATER[a.verdict]} | [{b.ci_low:+.2f}, {b.ci_high:+.2f}] | {reports.GREATER[b.verdict]} | "
        f"{(b.ci_high - b.ci_low) / (a.ci_high - a.ci_low):.2f} |"
    )
# within-pair correlation of the seeds' values (what pairing can exploit)
for c in cols:
    a = t1[(t1.row == "vilbert") & (t1.column == c)].set_index("seed").value.sort_index()
    b = t1[(t1.row == "vilbert†") & (t1.column == c)].set_index("seed").value.sort_index()
    r = a.corr(b) if a.std() > 0 and b.std() > 0 else float("nan")
    print(f"corr({c}) over seeds: {r:+.2f}")
