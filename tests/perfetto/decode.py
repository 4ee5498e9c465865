#!/usr/bin/env python3
"""Decode and validate a Perfetto trace written by `goprobe --perfetto FILE`.

An independent check of goprobe's hand-written protobuf: the file is parsed with the
official Perfetto protos from PyPI's `perfetto` package
(`perfetto.protos.perfetto.trace.perfetto_trace_pb2`), every message is checked for
fields the protos do not know (a wrong field number or wire type shows up as one), and
the trace is interpreted the way trace_processor does: per-sequence incremental state and
`TracePacketDefaults`, track descriptors, slice begin/end nesting per track, instants,
flows (`TrackEvent.flow_ids`).

Prints one JSON object on stdout:
  packets, bytes, sequences, clock_snapshots, tracks (uuid, kind, pid, tid, name),
  per_track (slice and instant counts by name), instants (count by name), slices (count,
  by name, unterminated), flows (count, sizes, link sequences), timestamps (min, max,
  clock ids), summary (the `goprobe_summary` annotations), errors (validation problems).
With --full also: instant_list [ts, tid, name, annotations], slice_list
[tid, name, begin_ts, end_ts, begin annotations, end annotations], flow_list
{flow_id: [[ts, tid, name], ...]} in timestamp order.

Exit status: 0 when the trace decoded (even with validation errors: they are in
"errors"), 1 when it cannot be parsed, 2 when the `perfetto` package is missing.

Install the package with: python3 -m pip install perfetto
"""

import argparse
import collections
import json
import sys

try:
    from google.protobuf import unknown_fields
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
except ImportError as err:  # pragma: no cover - environment problem
    print(
        f"decode.py: cannot import the Perfetto protos ({err}); "
        "install them with: python3 -m pip install perfetto",
        file=sys.stderr,
    )
    sys.exit(2)

CLOCK_NAMES = {v.number: v.name for v in pb.BuiltinClock.DESCRIPTOR.values}
DEFAULT_CLOCK = pb.BUILTIN_CLOCK_BOOTTIME
TYPE = pb.TrackEvent.Type


def unknown_field_paths(msg, path, out):
    """Appends the path of every message (recursively) holding unknown fields."""
    unknown = unknown_fields.UnknownFieldSet(msg)
    if len(unknown):
        numbers = sorted({f.field_number for f in unknown})
        out.append(f"{path}: unknown fields {numbers}")
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if field.is_repeated:
            for i, item in enumerate(value):
                unknown_field_paths(item, f"{path}.{field.name}[{i}]", out)
        else:
            unknown_field_paths(value, f"{path}.{field.name}", out)


def annotation_value(a):
    kind = a.WhichOneof("value")
    if kind is None:
        return None
    if kind == "pointer_value":
        return hex(a.pointer_value)
    if kind in ("nested_value", "proto_value"):
        return f"<{kind}>"
    return getattr(a, kind)


def annotations(event):
    return {a.name: annotation_value(a) for a in event.debug_annotations}


def decode(path, full):
    with open(path, "rb") as f:
        data = f.read()
    trace = pb.Trace()
    trace.ParseFromString(data)

    errors = []
    sequences = {}
    clock_snapshots = []
    tracks = {}  # uuid -> dict
    track_order = []
    instants = collections.Counter()
    per_track = collections.defaultdict(
        lambda: {"slices": collections.Counter(), "instants": collections.Counter()}
    )
    open_slices = collections.defaultdict(list)  # uuid -> stack of slice dicts
    slices = []
    flows = collections.defaultdict(list)  # id -> [(ts, order, tid, name)]
    clock_ids = collections.Counter()
    summary = None
    ts_min = ts_max = None

    for index, packet in enumerate(trace.packet):
        unknown_field_paths(packet, f"packet[{index}]", errors)
        seq_id = packet.trusted_packet_sequence_id
        seq = sequences.get(seq_id)
        if seq is None:
            seq = sequences[seq_id] = {
                "packets": 0,
                "first_packet_flags": packet.sequence_flags,
                "first_packet_on_sequence": packet.first_packet_on_sequence,
                "incremental_state_valid": False,
                "default_clock_id": None,
            }
        seq["packets"] += 1
        if packet.sequence_flags & pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED:
            seq["incremental_state_valid"] = True
            seq["default_clock_id"] = None
        if packet.HasField("trace_packet_defaults"):
            defaults = packet.trace_packet_defaults
            if defaults.HasField("timestamp_clock_id"):
                seq["default_clock_id"] = defaults.timestamp_clock_id
        needs_state = packet.sequence_flags & pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
        if needs_state and not seq["incremental_state_valid"]:
            errors.append(f"packet[{index}] needs incremental state before it was cleared")

        content = packet.WhichOneof("data")
        if content == "clock_snapshot":
            snap = packet.clock_snapshot
            clock_snapshots.append(
                {
                    "clocks": {
                        CLOCK_NAMES.get(c.clock_id, str(c.clock_id)): c.timestamp
                        for c in snap.clocks
                    },
                    "primary_trace_clock": CLOCK_NAMES.get(snap.primary_trace_clock)
                    if snap.HasField("primary_trace_clock")
                    else None,
                }
            )
            continue
        if content == "track_descriptor":
            desc = packet.track_descriptor
            track = tracks.get(desc.uuid)
            if track is None:
                track = tracks[desc.uuid] = {"uuid": desc.uuid, "descriptors": 0}
                track_order.append(desc.uuid)
            track["descriptors"] += 1
            if desc.HasField("parent_uuid"):
                track["parent_uuid"] = desc.parent_uuid
            if desc.HasField("name"):
                track["name"] = desc.name
            if desc.HasField("process"):
                track["kind"] = "process"
                track["pid"] = desc.process.pid
                if desc.process.HasField("process_name"):
                    track["name"] = desc.process.process_name
            elif desc.HasField("thread"):
                track["kind"] = "thread"
                track["pid"] = desc.thread.pid
                track["tid"] = desc.thread.tid
                if desc.thread.HasField("thread_name"):
                    track["name"] = desc.thread.thread_name
            else:
                track.setdefault("kind", "other")
            continue
        if content != "track_event":
            if content is not None:
                errors.append(f"packet[{index}]: unexpected packet content {content}")
            continue

        event = packet.track_event
        if not packet.HasField("timestamp"):
            errors.append(f"packet[{index}]: track event without timestamp")
            continue
        ts = packet.timestamp
        if packet.HasField("timestamp_clock_id"):
            clock = packet.timestamp_clock_id
        elif seq["incremental_state_valid"] and seq["default_clock_id"] is not None:
            if not needs_state:
                errors.append(
                    f"packet[{index}]: uses the sequence's default clock without "
                    "SEQ_NEEDS_INCREMENTAL_STATE"
                )
            clock = seq["default_clock_id"]
        else:
            clock = DEFAULT_CLOCK
        clock_ids[CLOCK_NAMES.get(clock, str(clock))] += 1
        ts_min = ts if ts_min is None else min(ts_min, ts)
        ts_max = ts if ts_max is None else max(ts_max, ts)

        uuid = event.track_uuid
        track = tracks.get(uuid)
        if track is None:
            errors.append(f"packet[{index}]: track {uuid} used before its descriptor")
            track = {"uuid": uuid}
        tid = track.get("tid")
        name = event.name
        args = annotations(event)
        if event.type == TYPE.TYPE_INSTANT:
            if name == "goprobe_summary":
                summary = dict(args, ts=ts, track_kind=track.get("kind"))
            instants[name] += 1
            per_track[uuid]["instants"][name] += 1
            if full:
                slices.append(("instant", ts, tid, name, args))
        elif event.type == TYPE.TYPE_SLICE_BEGIN:
            open_slices[uuid].append({"ts": ts, "name": name, "args": args})
            per_track[uuid]["slices"][name] += 1
        elif event.type == TYPE.TYPE_SLICE_END:
            stack = open_slices[uuid]
            if not stack:
                errors.append(f"packet[{index}]: slice end without begin on track {uuid}")
            else:
                begin = stack.pop()
                if ts < begin["ts"]:
                    errors.append(f"packet[{index}]: slice {begin['name']} ends before it begins")
                slices.append(("slice", tid, begin["name"], begin["ts"], ts, begin["args"], args))
        else:
            errors.append(f"packet[{index}]: unexpected track event type {event.type}")
        for flow in event.flow_ids:
            flows[flow].append((ts, index, tid, name))
        if event.terminating_flow_ids:
            errors.append(f"packet[{index}]: terminating flow ids are not expected")

    unterminated = sum(len(s) for s in open_slices.values())
    slice_list = [s[1:] for s in slices if s[0] == "slice"]
    instant_list = [s[1:] for s in slices if s[0] == "instant"]

    flow_sizes = collections.Counter()
    flow_shapes = collections.Counter()
    flow_list = {}
    for flow, events in flows.items():
        events.sort()
        flow_sizes[str(len(events))] += 1
        flow_shapes[">".join(e[3] for e in events)] += 1
        if len(events) < 2:
            errors.append(f"flow {flow} joins a single event")
        if full:
            flow_list[str(flow)] = [[e[0], e[2], e[3]] for e in events]

    track_list = []
    for uuid in track_order:
        track = dict(tracks[uuid])
        counts = per_track.get(uuid)
        track["slices"] = dict(sorted(counts["slices"].items())) if counts else {}
        track["instants"] = dict(sorted(counts["instants"].items())) if counts else {}
        track_list.append(track)

    slice_names = collections.Counter(s[1] for s in slice_list)
    out = {
        "file": path,
        "bytes": len(data),
        "packets": len(trace.packet),
        "sequences": {str(k): v for k, v in sequences.items()},
        "clock_snapshots": clock_snapshots,
        "tracks": track_list,
        "instants": dict(sorted(instants.items())),
        "slices": {
            "count": len(slice_list),
            "unterminated": unterminated,
            "goroutines": len(slice_names),
            "ended_by": dict(
                sorted(collections.Counter(s[5].get("ended_by") for s in slice_list).items())
            ),
        },
        "flows": {
            "count": len(flows),
            "events": sum(len(e) for e in flows.values()),
            "sizes": dict(sorted(flow_sizes.items(), key=lambda kv: int(kv[0]))),
            "shapes": dict(flow_shapes.most_common()),
        },
        "timestamps": {"min": ts_min, "max": ts_max, "clocks": dict(clock_ids)},
        "summary": summary,
        "errors": errors,
    }
    if full:
        out["instant_list"] = instant_list
        out["slice_list"] = slice_list
        out["flow_list"] = flow_list
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", help="a trace written by goprobe --perfetto")
    parser.add_argument(
        "--full", action="store_true", help="also list every instant, slice and flow"
    )
    parser.add_argument("--indent", type=int, default=None, help="pretty-print JSON")
    args = parser.parse_args()
    try:
        out = decode(args.trace, args.full)
    except Exception as err:  # noqa: BLE001 - report any decoding failure plainly
        print(f"decode.py: cannot decode {args.trace}: {err}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout, indent=args.indent)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
