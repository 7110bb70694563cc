"""The `chiplet` study (Hecaton, docs/chiplet.md): LLM training on a 2D mesh of compute dies.

hardware   die, D2D package and DRAM specs with their energy constants (§3)
mesh       the one costing engine: collectives as XY-routed point-to-point steps (§5.3)
methods    1D, 2D, 2.5D, 3D and Hecaton-2D as GEMM shapes, collectives and buffers (§5)
cost       DRAM traffic, scheduling, latency, energy and area, vectorised over points (§6-§7)
study      the search-engine study and the reports (§10)
validate   the §9 validation rows and the §8 weak-scaling proxies
"""
