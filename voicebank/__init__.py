"""The voice bank: recorded clips, how they get in, where they are stored and how they are heard.

Audio in:
    pcm         decode accepted formats (sniffed from the bytes), mix to mono, resample
    levels      loudness, peaks, where speech starts and ends, the soft limiter
    encode      the lossless master, the delivery MP3, the render MP3
    ingest      one recording: validate, decode, trim, level, encode (a ProcessedClip)
    split       one long take into its script's phrases
    importer    single files, long takes and sound packs into the catalogue
    asterisk    an Asterisk sound pack (and its transcript list) as a voice
    slurp       a tenant-hosted recording downloaded (safely) and ingested like an upload

Rows and objects:
    schema      the clip tables (voices, clips, clip_checks) on the project's MetaData
    sql         what every row-keeping layer shares: utcnow, aware, dialect_insert
    catalogue   voices and clips: adding takes, listing, the planner's clip index
    check_store each clip's latest fetch check and the cached MD5 of its MP3
    storage/    where clip audio lives: base (Protocol, content keys), local, s3, sync,
                ``open_storage``

Audio out and its health:
    render      a Plan to one MP3 (cached clip PCM, pauses, fades)
    stitch      one MP3 per sentence of a call, from a recipe (clips, gaps, tail), rendered once
    sentence_store  the stitched sentences' rows and their latest checks
    tts         espeak-ng (or a placeholder) for phrases nobody recorded
    checks      can Twilio fetch each clip URL, and does it get the right bytes
    audit       check every clip and stitched sentence through its URL; repair what fails
    errors      the voice bank's exceptions, mapped to HTTP statuses or exit codes at the edges

Dependencies point one way, server -> voicebank -> prompts: nothing here imports ``server``
(settings reach this package as plain arguments, e.g. ``slurp.SlurpLimits``).
"""
