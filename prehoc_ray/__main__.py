from prehoc_ray.cli import main

main()
