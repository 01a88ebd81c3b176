# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tunnat_global_optspecs
    string join \n config= inside-tun= inside-netns= inside-addr= outside-tun= outside-netns= outside-addr= ipv6= nat64= nat64-udp-zero-checksum= dnat= policy-port= policy-file= policy-idle-timeout= policy-max-clients= pcp nat-pmp upnp upnp-port= portmap-rule= portmap-max-per-host= portmap-max-lifetime= alg= mtu= inside-mtu= outside-mtu= clamp-mss= udp-timeout= tcp-established-timeout= tcp-transitory-timeout= tcp-half-open-timeout= icmp-timeout= filtering= max-sessions= max-mappings= max-mappings-per-host= max-half-open= syn-cookies= port-hold= icmp-rate= icmp-burst= port-parity seed= no-offload no-io-uring persist state-file= trace trace-filter= pcap-dir= pcap-pair= event-ring= control= control-group= h/help V/version
end

function __fish_tunnat_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tunnat_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tunnat_using_subcommand
    set -l cmd (__fish_tunnat_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tunnat -n "__fish_tunnat_needs_command" -l config -d 'TOML file with any of these options (see README); re-read on SIGHUP or `tunnat reload`' -r -F
complete -c tunnat -n "__fish_tunnat_needs_command" -l inside-tun -d 'TUN device of the inside (LAN) port; attached to if it exists, created otherwise. [required]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l inside-netns -d 'Network namespace to open the inside TUN in: a name under /run/netns (as ip netns makes) or a path such as /proc/PID/ns/net. [default: own namespace]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l inside-addr -d 'The router\'s inside address and the inside network, e.g. 192.168.122.100/24; only sources in this network are translated. Once per family: add an IPv6 one (fd00:122::100/64) for a dual-stack router doing NAT66, or give only that for an IPv6-only router; --outside-addr must have the same families, except with --nat64 (IPv6 inside, IPv4 outside). [required]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l outside-tun -d 'TUN device of the outside (WAN) port; attached to if it exists, created otherwise. [required]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l outside-netns -d 'Network namespace to open the outside TUN in, as for --inside-netns. [default: own namespace]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l outside-addr -d 'The router\'s outside address and network, e.g. 172.16.1.186/24; every inside host appears as this address. Once per family, as --inside-addr (2001:db8:1::186/64). [required]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l ipv6 -d 'What the router does with IPv6 (when both ports have an IPv6 address): nat (NAT66: every inside host appears as the outside IPv6 address, like ip6tables MASQUERADE), npt (RFC 6296 prefix translation: stateless, one to one, checksum-neutral, ports untouched; both prefixes /48 to /64 and of equal length), or route (forwarded as it is, hop limit decremented, for inside hosts with addresses the outside reaches). [default: nat]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l nat64 -d 'Stateful NAT64 (RFC 6146) through this prefix (RFC 6052: /32, /40, /48, /56, /64 or /96), e.g. 64:ff9b::/96: inside IPv6 hosts reach IPv4 host A at PREFIX+A, leaving from the outside IPv4 address and sharing its ports with NAT44. Needs an IPv6 address on the inside port and an IPv4 one on the outside port. The well-known prefix 64:ff9b::/96 only stands for global IPv4 addresses (RFC 6052 section 3.1); a network-specific or local-use prefix (64:ff9b:1::/96, RFC 8215) for any. A port forward to an IPv6 target is then served on the outside IPv4 address too. [default: off]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l nat64-udp-zero-checksum -d 'What NAT64 does with an IPv4 UDP datagram without a checksum, which IPv6 cannot carry (RFC 7915 section 4.5): compute one, or drop it (counted). A fragmented one is always dropped. [default: compute]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l dnat -d 'Port forwarding PROTO:PORT[-PORT]=IP[:PORT], repeatable: tcp:8888=192.168.122.73:9999; udp:5000-5010=192.168.122.73 keeps the ports; tcp:8000-8010=192.168.122.73:9000 shifts them; an IPv6 target goes in brackets, tcp:8888=[fd00:122::73]:9999, and forwards the outside IPv6 address\'s port. The target must be on the inside network; rules of a family may not overlap. Flags replace the file\'s list. [default: none]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l policy-port -d 'TCP port of the Flash socket policy server on both router addresses; 0 turns it off. [default: 843]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l policy-file -d 'File holding the cross-domain policy XML to serve (the NUL is added). [default: allow all]' -r -F
complete -c tunnat -n "__fish_tunnat_needs_command" -l policy-idle-timeout -d 'Seconds a policy client may take to send its whole request before it is reset. [default: 3]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l policy-max-clients -d 'Most policy connections served at once on each port: the pool starts at 64 sockets and grows on demand up to this, before it resets the connections that have waited longest without a request. [default: 1024]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l upnp-port -d 'TCP port of the UPnP HTTP server on the inside address. [default: 5000]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l portmap-rule -d 'Who may map which ports with PCP, NAT-PMP or UPnP, in miniupnpd\'s form, repeatable and in order: allow 1024-65535 192.168.122.0/24 1024-65535 (external ports, inside hosts, inside ports) or deny ...; the first that matches decides, and a request none matches is refused. Without rules: the inside network may map ports 1024-65535 to its ports 1024-65535. A host may only map to itself, never over a port forward or another host\'s mapping. [default: inside network, ports 1024-65535]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l portmap-max-per-host -d 'Most port mappings (PCP, NAT-PMP, UPnP together) one inside host may hold. [default: 32]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l portmap-max-lifetime -d 'Longest lifetime granted to a port mapping, in seconds (a UPnP IGD v1 mapping with lease 0 is kept until deleted). [default: 86400]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l alg -d 'Application-level gateways, repeatable: ftp rewrites the addresses in FTP\'s PORT/EPRT commands from inside clients and in 227/229 replies of servers behind a port forward (TCP port 21), opens the data connection for exactly that peer, and adjusts TCP sequence numbers when a line changes length (as the kernel\'s nf_nat_ftp). [default: none]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l mtu -d 'Largest packet forwarded; a larger packet with DF set gets ICMP "fragmentation needed" with this MTU. [default: 1500]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l inside-mtu -d 'MTU of the inside port, overriding --mtu, for a path whose two sides differ: a packet is checked against the port it leaves by. [default: --mtu]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l outside-mtu -d 'MTU of the outside port, overriding --mtu. [default: --mtu]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l clamp-mss -d 'Lower the MSS option of forwarded TCP SYNs to N, or to the leaving port\'s MTU minus 40 with mtu (RFC 4459 section 3.2), for paths where ICMP is filtered. [default: off]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l udp-timeout -d 'Idle timeout of UDP sessions, seconds (RFC 4787 REQ-5: at least 120). [default: 300]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l tcp-established-timeout -d 'Idle timeout of open TCP connections, seconds (RFC 5382 REQ-5: at least 7440). [default: 7440]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l tcp-transitory-timeout -d 'Idle timeout of TCP connections that are opening, closing or reset, seconds (RFC 5382, RFC 7857). [default: 240]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l tcp-half-open-timeout -d 'Idle timeout of TCP connections opened from outside whose handshake has not completed (a SYN answered, the remote\'s ACK not seen), seconds; what a SYN flood to a port forward leaves behind, like conntrack\'s SYN_RECV (60 s). [default: 30]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l icmp-timeout -d 'Idle timeout of ICMP echo sessions, seconds (RFC 5508 REQ-2: at least 60). [default: 60]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l filtering -d 'Which remotes may send to a mapped port: endpoint-independent, address-dependent or address-and-port-dependent (RFC 4787 section 5). [default: address-dependent]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l max-sessions -d 'Size of the session table. When it is full, the least recently used session idle at least its RFC minimum (UDP 120 s, ICMP 60 s, TCP 240 s opening or closing, 7440 s established) is evicted; if there is none, the new session gets ICMP 3/13. [default: 65536]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l max-mappings -d 'Most mappings (inside endpoints with an external port). [default: 65536]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l max-mappings-per-host -d 'Most mappings one inside address may hold (RFC 6888 REQ-4); beyond it, ICMP 3/13, so one host\'s flood of source ports cannot take the others\' ports. The default is no limit: every short TCP connection holds a mapping for 240 s after it closes (RFC 5382), so a busy but honest client can hold tens of thousands. [default: 65536]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l max-half-open -d 'Most half-open TCP sessions (opened from outside, handshake not complete) one port forward may hold; beyond, new SYNs are answered with SYN cookies (--syn-cookies auto) or evict the oldest of them (off). By default a quarter of --max-sessions. [default: max-sessions / 4]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l syn-cookies -d 'When the router answers SYNs to a port forward itself with SYN cookies and opens to the inside server only on the client\'s valid ACK (RFC 4987 section 3.6, netfilter\'s SYNPROXY): auto once the port forward holds --max-half-open half-open sessions, always, or off. Connections so made get no window scaling, SACK or timestamps. [default: auto]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l port-hold -d 'Seconds a released external port is kept from other inside hosts (RFC 6888); the host that had it may take it back at once. [default: 120]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l icmp-rate -d 'Most ICMP errors the router sends per second on average (time exceeded, unreachable, fragmentation needed), as Linux\'s icmp_msgs_per_sec (RFC 1812 section 4.3.2.8); 0 for no limit. Echo replies are not limited. [default: 1000]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l icmp-burst -d 'Most ICMP errors the router sends at once, as Linux\'s icmp_msgs_burst. [default: 50]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l seed -d 'Seed the random choices (the external port when the inside one is taken, the router\'s own TCP sequence numbers) for reproducible runs; by default a random seed from the OS at each start (RFC 6056). [default: random]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l state-file -d 'On SIGTERM or SIGINT (and when a port is lost), save the sessions and the port forwards added at run time to FILE (written whole, then renamed into place; mode 0600); at start, carry on from FILE if it is there, less what timed out meanwhile, then remove it. A file that cannot be read whole, or was saved with other router addresses, is refused and tunnat does not start. With --persist, connections through the router survive a restart. [default: off]' -r -F
complete -c tunnat -n "__fish_tunnat_needs_command" -l trace-filter -d 'Trace only tcp, udp, icmp, tcp:PORT or udp:PORT (either port); repeatable; implies --trace. [default: all]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l pcap-dir -d 'Write every packet crossing the inside port to DIR/inside.pcap, the outside port to DIR/outside.pcap, for tcpdump -r or Wireshark: as read from the TUN before translation and as written after, raw IP without a link header (LINKTYPE_RAW). That is all a TUN carries, not only what tunnat forwards: the namespace kernels\' own packets, such as IPv6 router solicitations, which tunnat counts and drops, are in the files too. [default: off]' -r -F
complete -c tunnat -n "__fish_tunnat_needs_command" -l pcap-pair -d 'Paired captures for teaching: DIR/inside.pcapng and DIR/outside.pcapng, each packet with a comment (Wireshark\'s frame.comment) naming the packet it became or came from on the other side, what was rewritten, and the session: -> outside #3: src 192.168.122.101:40000 -> 172.16.1.186:40000; session tcp .... A packet not forwarded is marked so. [default: off]' -r -F
complete -c tunnat -n "__fish_tunnat_needs_command" -l event-ring -d 'Keep the headers of the last N packets that crossed the ports (each read, each write, tied to the packet that caused it), for the ladder diagrams of tunnat web; 0 turns it off, and the data path then pays nothing for it. [default: 0]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l control -d 'Listen on this Unix socket for tunnat table, stats, dnat and reload. It is created mode 0660; only a stale socket already at PATH is replaced. Requests that change the router (dnat add, dnat del, reload) are taken from root and tunnat\'s own user only; read-only ones from its group too. [default: off]' -r -F
complete -c tunnat -n "__fish_tunnat_needs_command" -l control-group -d 'Give the control socket to this group (a name or a number); its members may use every request, including those that change the router. [default: tunnat\'s group]' -r
complete -c tunnat -n "__fish_tunnat_needs_command" -l pcp -d 'Serve PCP (RFC 6887: MAP, PEER, ANNOUNCE) on UDP 5351 of the inside IPv4 address: inside hosts open their own port forwards, within --portmap-rule.'
complete -c tunnat -n "__fish_tunnat_needs_command" -l nat-pmp -d 'Serve NAT-PMP (RFC 6886) on UDP 5351 of the inside IPv4 address, beside PCP if both are on; the outside address is announced to 224.0.0.1:5350 at start.'
complete -c tunnat -n "__fish_tunnat_needs_command" -l upnp -d 'Serve UPnP IGD (v2, and v1 clients in v1\'s terms) to the inside network: SSDP answers to searches on 239.255.255.250:1900, the description and SOAP control over HTTP on the inside IPv4 address (--upnp-port).'
complete -c tunnat -n "__fish_tunnat_needs_command" -l port-parity -d 'When the inside port is taken, pick an external port of the same parity (RFC 4787 REQ-4, for RTP/RTCP pairs).'
complete -c tunnat -n "__fish_tunnat_needs_command" -l no-offload -d 'Open the TUNs without offloads (offload = false in the file): one MTU-sized packet per read and write, every checksum complete. By default tunnat asks the kernel for partial checksums and TCP/UDP segmentation offload, so a read or write carries up to 64 KB; if the kernel refuses, tunnat says so and runs without.'
complete -c tunnat -n "__fish_tunnat_needs_command" -l no-io-uring -d 'Move packets with read and write calls, one packet each, instead of io_uring (io-uring = false in the file). By default tunnat uses io_uring where the kernel has it (Linux 6.7 and later, not disabled by kernel.io_uring_disabled): one multishot read per port and batched writes, many packets per system call; where it has not, tunnat says so and uses read and write calls.'
complete -c tunnat -n "__fish_tunnat_needs_command" -l persist -d 'Make the TUN devices persistent (TUNSETPERSIST): they, and the addresses and routes their namespaces gave them, outlive tunnat, so a restart finds them as they were. A port whose device is deleted is then not fatal: tunnat waits for a device of that name to come back in its namespace and attaches to it. Delete the devices with ip link del NAME when done.'
complete -c tunnat -n "__fish_tunnat_needs_command" -l trace -d 'Print every packet on standard output in the kernel LOG target\'s format: PRE IN: as read from a port, POST OUT: as written to one.'
complete -c tunnat -n "__fish_tunnat_needs_command" -s h -l help -d 'Print help'
complete -c tunnat -n "__fish_tunnat_needs_command" -s V -l version -d 'Print version'
complete -c tunnat -n "__fish_tunnat_needs_command" -f -a "table" -d 'Show the session table (like conntrack -L)'
complete -c tunnat -n "__fish_tunnat_needs_command" -f -a "stats" -d 'Show the counters: packets, drops by reason, sessions created and expired'
complete -c tunnat -n "__fish_tunnat_needs_command" -f -a "dnat" -d 'List, add or remove port forwarding rules at run time'
complete -c tunnat -n "__fish_tunnat_needs_command" -f -a "reload" -d 'Re-read the config file (as SIGHUP does)'
complete -c tunnat -n "__fish_tunnat_needs_command" -f -a "export" -d 'Print the router as the kernel\'s equivalent ruleset (nft or iptables), with a comment for each thing the kernel cannot express. Of the router options given before the subcommand (or `--config FILE`), or of a running router with `--control`'
complete -c tunnat -n "__fish_tunnat_needs_command" -f -a "explain" -d 'Say, step by step, what the router does with a packet: the rule or mapping, the port chosen and why, filtering, the rewritten fields, the timeout, where netfilter differs. Of a running router with `--control` (changing nothing), else of the router options given before the subcommand. E.g. `tunnat explain inside tcp 192.168.122.101:5000 172.16.1.1:80 syn`'
complete -c tunnat -n "__fish_tunnat_needs_command" -f -a "web" -d 'Serve the live web view of a router: sessions, counters, port forwards, and a ladder diagram of a session\'s packets (start the router with `--event-ring N` for those). A separate process on the control socket; read-only unless `--allow-changes`'
complete -c tunnat -n "__fish_tunnat_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tunnat -n "__fish_tunnat_using_subcommand table" -l control -d 'The router\'s control socket; may also come before the subcommand, or from the `control` key of `--config FILE`. Default: /run/tunnat.sock' -r -F
complete -c tunnat -n "__fish_tunnat_using_subcommand table" -l json -d 'Print the JSON answer instead of a table'
complete -c tunnat -n "__fish_tunnat_using_subcommand table" -s h -l help -d 'Print help'
complete -c tunnat -n "__fish_tunnat_using_subcommand stats" -l control -d 'The router\'s control socket; may also come before the subcommand, or from the `control` key of `--config FILE`. Default: /run/tunnat.sock' -r -F
complete -c tunnat -n "__fish_tunnat_using_subcommand stats" -l json -d 'Print the JSON answer instead of a table'
complete -c tunnat -n "__fish_tunnat_using_subcommand stats" -s h -l help -d 'Print help'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and not __fish_seen_subcommand_from list add del help" -s h -l help -d 'Print help'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and not __fish_seen_subcommand_from list add del help" -f -a "list" -d 'List the rules (those added at run time are marked)'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and not __fish_seen_subcommand_from list add del help" -f -a "add" -d 'Add a rule; it is kept across reloads, and in the state file'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and not __fish_seen_subcommand_from list add del help" -f -a "del" -d 'Remove a rule; its open sessions run on until they expire'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and not __fish_seen_subcommand_from list add del help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and __fish_seen_subcommand_from list" -l control -d 'The router\'s control socket; may also come before the subcommand, or from the `control` key of `--config FILE`. Default: /run/tunnat.sock' -r -F
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and __fish_seen_subcommand_from list" -l json -d 'Print the JSON answer instead of a table'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and __fish_seen_subcommand_from add" -l control -d 'The router\'s control socket; may also come before the subcommand, or from the `control` key of `--config FILE`. Default: /run/tunnat.sock' -r -F
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and __fish_seen_subcommand_from add" -l json -d 'Print the JSON answer instead of a table'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and __fish_seen_subcommand_from del" -l control -d 'The router\'s control socket; may also come before the subcommand, or from the `control` key of `--config FILE`. Default: /run/tunnat.sock' -r -F
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and __fish_seen_subcommand_from del" -l json -d 'Print the JSON answer instead of a table'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and __fish_seen_subcommand_from del" -s h -l help -d 'Print help'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the rules (those added at run time are marked)'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add a rule; it is kept across reloads, and in the state file'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and __fish_seen_subcommand_from help" -f -a "del" -d 'Remove a rule; its open sessions run on until they expire'
complete -c tunnat -n "__fish_tunnat_using_subcommand dnat; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tunnat -n "__fish_tunnat_using_subcommand reload" -l control -d 'The router\'s control socket; may also come before the subcommand, or from the `control` key of `--config FILE`. Default: /run/tunnat.sock' -r -F
complete -c tunnat -n "__fish_tunnat_using_subcommand reload" -l json -d 'Print the JSON answer instead of a table'
complete -c tunnat -n "__fish_tunnat_using_subcommand reload" -s h -l help -d 'Print help'
complete -c tunnat -n "__fish_tunnat_using_subcommand export" -l inside-if -d 'The kernel\'s interface on the inside (default: the inside TUN\'s name)' -r
complete -c tunnat -n "__fish_tunnat_using_subcommand export" -l outside-if -d 'The kernel\'s interface on the outside (default: the outside TUN\'s name)' -r
complete -c tunnat -n "__fish_tunnat_using_subcommand export" -l control -d 'Export the running router (its port forwards added at run time too) through this control socket' -r -F
complete -c tunnat -n "__fish_tunnat_using_subcommand export" -l flowtable -d 'Add a flowtable: the kernel\'s fast path for established flows (nft only)'
complete -c tunnat -n "__fish_tunnat_using_subcommand export" -s h -l help -d 'Print help'
complete -c tunnat -n "__fish_tunnat_using_subcommand explain" -l pcap -d 'Explain each packet of this capture (pcap, raw IP as tunnat\'s --pcap-dir and tcpdump on a TUN write it) in turn, as read from SIDE, offline' -r -F
complete -c tunnat -n "__fish_tunnat_using_subcommand explain" -l control -d 'Ask the running router with this control socket' -r -F
complete -c tunnat -n "__fish_tunnat_using_subcommand explain" -s h -l help -d 'Print help'
complete -c tunnat -n "__fish_tunnat_using_subcommand web" -l listen -d 'Address and port to serve on' -r
complete -c tunnat -n "__fish_tunnat_using_subcommand web" -l control -d 'The router\'s control socket (default as for the other subcommands)' -r -F
complete -c tunnat -n "__fish_tunnat_using_subcommand web" -l allow-changes -d 'Let the page add and remove port forwards'
complete -c tunnat -n "__fish_tunnat_using_subcommand web" -s h -l help -d 'Print help'
complete -c tunnat -n "__fish_tunnat_using_subcommand help; and not __fish_seen_subcommand_from table stats dnat reload export explain web help" -f -a "table" -d 'Show the session table (like conntrack -L)'
complete -c tunnat -n "__fish_tunnat_using_subcommand help; and not __fish_seen_subcommand_from table stats dnat reload export explain web help" -f -a "stats" -d 'Show the counters: packets, drops by reason, sessions created and expired'
complete -c tunnat -n "__fish_tunnat_using_subcommand help; and not __fish_seen_subcommand_from table stats dnat reload export explain web help" -f -a "dnat" -d 'List, add or remove port forwarding rules at run time'
complete -c tunnat -n "__fish_tunnat_using_subcommand help; and not __fish_seen_subcommand_from table stats dnat reload export explain web help" -f -a "reload" -d 'Re-read the config file (as SIGHUP does)'
complete -c tunnat -n "__fish_tunnat_using_subcommand help; and not __fish_seen_subcommand_from table stats dnat reload export explain web help" -f -a "export" -d 'Print the router as the kernel\'s equivalent ruleset (nft or iptables), with a comment for each thing the kernel cannot express. Of the router options given before the subcommand (or `--config FILE`), or of a running router with `--control`'
complete -c tunnat -n "__fish_tunnat_using_subcommand help; and not __fish_seen_subcommand_from table stats dnat reload export explain web help" -f -a "explain" -d 'Say, step by step, what the router does with a packet: the rule or mapping, the port chosen and why, filtering, the rewritten fields, the timeout, where netfilter differs. Of a running router with `--control` (changing nothing), else of the router options given before the subcommand. E.g. `tunnat explain inside tcp 192.168.122.101:5000 172.16.1.1:80 syn`'
complete -c tunnat -n "__fish_tunnat_using_subcommand help; and not __fish_seen_subcommand_from table stats dnat reload export explain web help" -f -a "web" -d 'Serve the live web view of a router: sessions, counters, port forwards, and a ladder diagram of a session\'s packets (start the router with `--event-ring N` for those). A separate process on the control socket; read-only unless `--allow-changes`'
complete -c tunnat -n "__fish_tunnat_using_subcommand help; and not __fish_seen_subcommand_from table stats dnat reload export explain web help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tunnat -n "__fish_tunnat_using_subcommand help; and __fish_seen_subcommand_from dnat" -f -a "list" -d 'List the rules (those added at run time are marked)'
complete -c tunnat -n "__fish_tunnat_using_subcommand help; and __fish_seen_subcommand_from dnat" -f -a "add" -d 'Add a rule; it is kept across reloads, and in the state file'
complete -c tunnat -n "__fish_tunnat_using_subcommand help; and __fish_seen_subcommand_from dnat" -f -a "del" -d 'Remove a rule; its open sessions run on until they expire'
