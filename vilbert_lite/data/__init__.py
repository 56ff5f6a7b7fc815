"""The data: the synthetic world (scene, texts, world), real-data readers (formats, easy_vqa), region features
(regions, the feature store, the extract command), tokenizing and batching (tokenize, collate, items)."""
