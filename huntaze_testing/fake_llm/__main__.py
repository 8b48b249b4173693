"""``python -m huntaze_testing.fake_llm``: run the fake server until interrupted."""

from huntaze_testing.fake_llm.process import main

main()
