python benchmarks/anytime.py --problems 10k,20k --budgets 0.2,0.5,1,2,5,10,30 --methods auto/det,cpsat/det --repeats 1 --out benchmarks/results/anytime_det_scale.md
