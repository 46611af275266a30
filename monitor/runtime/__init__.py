"""I/O around the pipeline's stages: the Faust worker, Kafka topics and replays."""
