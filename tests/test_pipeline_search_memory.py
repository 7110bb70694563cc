"""A pipeline search's memory stays bounded: it keeps summaries, not timelines, and its caches
of compiled programs and op lists have budgets (docs/pipeline.md §10)."""

from explore.models.pipeline import schedules
from explore.models.pipeline import simulator as sim


def test_search_keeps_summaries_and_the_program_cache_its_budget(cli, monkeypatch):
    from explore.models.pipeline import study as st
    kept = []
    real = st.PipelineStudy.evaluate

    def spy(self, points):
        out = real(self, points)
        kept.append(list(self._cache.values()))
        return out
    monkeypatch.setattr(st.PipelineStudy, "evaluate", spy)
    monkeypatch.setattr(sim, "PROGRAM_CACHE_OPS", 5_000)
    sim._programs.clear()
    code, _, err = cli("pipeline", "--model", "llama2-7b", "--gpus", "8", "--global-batch",
                       "64", "--seq", "2048", "--schedule", "1f1b,interleaved", "--json")
    assert code == 0, err
    assert kept and all(isinstance(x, st.Summary) for batch in kept for x in batch)
    assert sum(p.n for p in sim._programs.values()) <= 5_000
    assert schedules.build.cache_info().maxsize <= 16
